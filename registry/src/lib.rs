//! The launcher plugin store and registry.
