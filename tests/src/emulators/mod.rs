//! One in-process fake per vendor API.

pub mod azure;
pub mod ollama;
pub mod openai;
