//! One in-process fake per vendor API.
