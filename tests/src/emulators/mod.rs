//! One in-process fake per vendor API.

pub mod a1111;
pub mod azure;
pub mod comfyui;
pub mod deepbrain;
pub mod elevenlabs;
pub mod kling;
pub mod minimax;
pub mod murf;
pub mod ollama;
pub mod openai;
pub mod replicate;
pub mod runway;
pub mod tasks;
