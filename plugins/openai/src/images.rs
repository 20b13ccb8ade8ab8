//! Images: `txt2img` through `/images/generations`.
//!
//! `--width`/`--height` become `size` (one alone makes a square), checked against the sizes
//! OpenAI's models take before anything is sent; other models (LocalAI's, sd.cpp's) get any
//! size. Images are asked for as `b64_json`; a server that answers with URLs anyway has them
//! downloaded through the same client and streamed into the output. Each image is the output
//! `image`, `image-2`, … named by the format its bytes show. LocalAI reads the text after `|`
//! in the prompt as the negative prompt, which is where `--negative` goes for it; OpenAI has
//! no negative prompt, so `--negative` is refused there rather than silently dropped.

use std::io::Write;

use base64::Engine;
use launcher_sdk::http::Request;
use launcher_sdk::media;
use launcher_sdk::serde_json::{Map, Value, json};
use launcher_sdk::{Context, Job, JobResult, LogLevel, PluginError};
use serde::Deserialize;

use crate::OpenAi;
use crate::profiles::Quirk;

#[derive(Deserialize)]
struct DrawParams {
    prompt: String,
    negative: Option<String>,
    width: Option<u32>,
    height: Option<u32>,
    steps: Option<u32>,
    seed: Option<i64>,
    count: Option<u32>,
    model: Option<String>,
    quality: Option<String>,
}

/// The sizes an OpenAI image model takes, or `None` for a model whose sizes are not known.
pub fn model_sizes(model: &str) -> Option<&'static [&'static str]> {
    match model {
        "dall-e-2" => Some(&["256x256", "512x512", "1024x1024"]),
        "dall-e-3" => Some(&["1024x1024", "1792x1024", "1024x1792"]),
        "gpt-image-1" => Some(&["1024x1024", "1536x1024", "1024x1536"]),
        _ => None,
    }
}

/// The most images one request to an OpenAI image model makes.
fn model_max_count(model: &str) -> Option<u32> {
    match model {
        "dall-e-3" => Some(1),
        "dall-e-2" | "gpt-image-1" => Some(10),
        _ => None,
    }
}

/// Returns the output name of image `index` (from 0): `image`, `image-2`, ….
fn output_name(index: usize) -> String {
    if index == 0 {
        "image".to_string()
    } else {
        format!("image-{}", index + 1)
    }
}

impl OpenAi {
    pub(crate) fn txt2img(
        &self,
        job: &Job,
        cx: &mut Context<'_>,
    ) -> Result<JobResult, PluginError> {
        let p: DrawParams = job.params()?;
        let model = self.media_model(p.model.as_deref(), self.profile.media.image);
        let size = match (p.width, p.height) {
            (None, None) => None,
            (w, h) => {
                let (w, h) = (w.or(h).unwrap_or(1024), h.or(w).unwrap_or(1024));
                Some(format!("{w}x{h}"))
            }
        };
        if let (Some(model), Some(size)) = (&model, &size)
            && let Some(sizes) = model_sizes(model)
            && !sizes.contains(&size.as_str())
        {
            return Err(PluginError::invalid_input(format!(
                "`{model}` does not make {size} images; it makes {}",
                sizes.join(", ")
            ))
            .with_hint("pick one of those with --width and --height"));
        }
        if let (Some(model), Some(count)) = (&model, p.count)
            && let Some(max) = model_max_count(model)
            && count > max
        {
            let many = if max == 1 {
                "one image".to_string()
            } else {
                format!("at most {max} images")
            };
            return Err(PluginError::invalid_input(format!(
                "`{model}` makes {many} per request, not {count}"
            )));
        }
        let prompt = match (&p.negative, self.profile.quirk) {
            (None, _) => p.prompt.clone(),
            (Some(negative), Quirk::LocalAi) => format!("{}|{negative}", p.prompt),
            (Some(_), _) => {
                return Err(PluginError::invalid_input(format!(
                    "`{}` has no negative prompt; say what to avoid in the prompt instead",
                    self.profile.id
                )));
            }
        };
        for (name, given) in [("steps", p.steps.is_some()), ("seed", p.seed.is_some())] {
            if given {
                cx.log(
                    LogLevel::Warn,
                    format!("the OpenAI image API takes no {name}; --{name} is ignored"),
                );
            }
        }
        let mut body = Map::new();
        if let Some(model) = &model {
            body.insert("model".into(), json!(model));
        }
        body.insert("prompt".into(), json!(prompt));
        if let Some(n) = p.count {
            body.insert("n".into(), json!(n));
        }
        if let Some(size) = &size {
            body.insert("size".into(), json!(size));
        }
        if let Some(quality) = &p.quality {
            body.insert("quality".into(), json!(quality));
        }
        // gpt-image-1 always answers base64 and refuses the parameter.
        if model.as_deref() != Some("gpt-image-1") {
            body.insert("response_format".into(), json!("b64_json"));
        }
        let request = self
            .request(
                Request::post(self.url("images/generations")),
                model.as_deref(),
            )
            .json(&body)?;
        let answer: Value = self.send(&request, cx)?.json(&*cx)?;
        let data = answer
            .get("data")
            .and_then(Value::as_array)
            .filter(|d| !d.is_empty())
            .ok_or_else(|| PluginError::unavailable("the server's answer holds no image"))?;
        let mut info = Map::new();
        if let Some(model) = &model {
            info.insert("model".into(), json!(model));
        }
        let mut revised = Vec::new();
        for (i, item) in data.iter().enumerate() {
            let name = output_name(i);
            if let Some(b64) = item.get("b64_json").and_then(Value::as_str) {
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(b64.trim())
                    .map_err(|e| {
                        PluginError::unavailable(format!(
                            "image {} is not valid base64: {e}",
                            i + 1
                        ))
                    })?;
                let format = media::sniff(&bytes).ok_or_else(|| {
                    PluginError::unavailable(format!("image {} is not an image format", i + 1))
                })?;
                let mut out = cx.output(&name, format.media_type, format.extension)?;
                out.write_all(&bytes)?;
                out.finish()?;
            } else if let Some(url) = item.get("url").and_then(Value::as_str) {
                // The link is the image, so it is sent like any other request of the profile
                // except for the key: it may point at another host (a CDN).
                let response = self.client.send(&Request::get(url), cx)?;
                response.write_output(&name, None, cx)?;
            } else {
                return Err(PluginError::unavailable(format!(
                    "image {} of the answer has neither b64_json nor url",
                    i + 1
                )));
            }
            if let Some(text) = item.get("revised_prompt").and_then(Value::as_str) {
                revised.push(json!(text));
            }
        }
        if !revised.is_empty() {
            info.insert("revised_prompt".into(), Value::Array(revised));
        }
        info.insert("images".into(), json!(data.len()));
        Ok(JobResult { info })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_images_in_order() {
        assert_eq!(output_name(0), "image");
        assert_eq!(output_name(1), "image-2");
        assert_eq!(output_name(9), "image-10");
    }

    #[test]
    fn knows_the_sizes_of_openai_models_only() {
        assert!(model_sizes("dall-e-3").unwrap().contains(&"1792x1024"));
        assert!(!model_sizes("dall-e-2").unwrap().contains(&"1792x1024"));
        assert!(model_sizes("stablediffusion").is_none());
    }
}
