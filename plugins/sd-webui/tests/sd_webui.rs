//! The sd-webui adapter against the A1111 emulator (and its sd-server flavour), and against
//! the real stable-diffusion.cpp `sd-server` with a random-weight checkpoint when installed.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use launcher_plugin_sd_webui::SdWebui;
use launcher_sdk::media::png_text;
use launcher_sdk::serde_json::{Value, json};
use launcher_sdk::testing::{self, Run, Runner};
use launcher_sdk::{ErrorKind, Settings};
use launcher_testkit::emulators::a1111::{A1111Emulator, Flavor, SAMPLERS};

fn settings(url: &str) -> Settings {
    Settings::from_values([("url", url)])
}

fn txt2img(emulator: &A1111Emulator, params: Value) -> Run {
    testing::run::<SdWebui>(
        "sd-webui",
        &settings(&emulator.url()),
        testing::job("txt2img", "sd-webui", params),
    )
}

/// Returns the width and height a PNG's IHDR says.
fn png_size(png: &[u8]) -> (u32, u32) {
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    let w = u32::from_be_bytes(png[16..20].try_into().unwrap());
    let h = u32::from_be_bytes(png[20..24].try_into().unwrap());
    (w, h)
}

#[test]
fn images_are_written_one_per_output_with_parameters_and_seeds() {
    let emulator = A1111Emulator::start(Flavor::A1111);
    let run = txt2img(
        &emulator,
        json!({"prompt": "a lighthouse", "negative": "fog", "width": 64, "height": 96,
               "steps": 3, "seed": 42, "batch_size": 2, "count": 2, "cfg_scale": 6.5,
               "sampler": "Euler a"}),
    );
    let result = run.result.as_ref().expect("the job succeeds");
    assert_eq!(run.outputs.len(), 4);
    let names: Vec<&str> = run.outputs.iter().map(|(h, _)| h.name.as_str()).collect();
    assert_eq!(names, ["image", "image-2", "image-3", "image-4"]);
    assert_eq!(
        run.closed.len(),
        4,
        "each image is complete as it is written"
    );
    for (i, (header, bytes)) in run.outputs.iter().enumerate() {
        assert_eq!(
            (header.media_type.as_str(), header.extension.as_str()),
            ("image/png", "png")
        );
        assert_eq!(png_size(bytes), (64, 96));
        let text = png_text(bytes, "parameters").expect("a parameters chunk");
        assert!(
            text.starts_with("a lighthouse\nNegative prompt: fog\n"),
            "{text}"
        );
        assert!(text.contains(&format!("Seed: {}", 42 + i)), "{text}");
        assert!(
            text.contains("Size: 64x96") && text.contains("Sampler: Euler a"),
            "{text}"
        );
    }
    assert_eq!(result.info["seeds"], json!([42, 43, 44, 45]));
    assert_eq!(result.info["images"], 4);
    let body = &emulator.bodies("/sdapi/v1/txt2img")[0];
    assert_eq!(body["negative_prompt"], "fog");
    assert_eq!(body["batch_size"], 2);
    assert_eq!(body["n_iter"], 2);
    assert_eq!(body["sampler_name"], "Euler a");
    assert!(body.get("override_settings").is_none());
}

#[test]
fn a_checkpoint_applies_to_this_request_only_and_extra_fields_pass_through() {
    let emulator = A1111Emulator::start(Flavor::A1111);
    let run = txt2img(
        &emulator,
        json!({"prompt": "x", "width": 64, "height": 64, "steps": 1,
               "checkpoint": "dreamshaper_8.safetensors [879db523c3]",
               "extra": "{\"restore_faces\": true, \"tiling\": false}"}),
    );
    run.result.as_ref().unwrap();
    let body = &emulator.bodies("/sdapi/v1/txt2img")[0];
    assert_eq!(
        body["override_settings"]["sd_model_checkpoint"],
        "dreamshaper_8.safetensors [879db523c3]"
    );
    assert_eq!(body["override_settings_restore_afterwards"], true);
    assert_eq!(body["restore_faces"], true);
    // --extra may not silently undo what the command line set.
    let clash = txt2img(
        &emulator,
        json!({"prompt": "x", "steps": 3, "extra": "{\"steps\": 90}"}),
    );
    assert!(
        clash.error().unwrap().message.contains("steps"),
        "{:?}",
        clash.result
    );
    let bad = txt2img(&emulator, json!({"prompt": "x", "extra": "[1]"}));
    assert_eq!(bad.error().unwrap().kind, ErrorKind::InvalidInput);
}

#[test]
fn progress_moves_while_a_slow_generation_runs_and_cancelling_interrupts_it() {
    let emulator = A1111Emulator::start(Flavor::A1111);
    emulator.slow(Duration::from_millis(60));
    let run = txt2img(
        &emulator,
        json!({"prompt": "slow", "width": 64, "height": 64, "steps": 20}),
    );
    run.result.as_ref().unwrap();
    let fractions: Vec<f64> = run.progress.iter().filter_map(|p| p.fraction).collect();
    assert!(fractions.len() >= 2, "{:?}", run.progress);
    assert!(fractions.windows(2).all(|w| w[0] <= w[1]), "{fractions:?}");
    assert!(
        run.progress.iter().any(|p| p.message.contains("step ")),
        "{:?}",
        run.progress
    );

    emulator.slow(Duration::from_millis(200));
    let cancel = Arc::new(AtomicBool::new(false));
    let flag = cancel.clone();
    let started = std::time::Instant::now();
    let run = Runner::new("sd-webui", &settings(&emulator.url()))
        .cancel(cancel)
        .watch(move |run| {
            if !run.progress.is_empty() {
                flag.store(true, Ordering::SeqCst);
            }
            true
        })
        .run::<SdWebui>(testing::job(
            "txt2img",
            "sd-webui",
            json!({"prompt": "never mind", "width": 64, "height": 64, "steps": 200}),
        ));
    assert_eq!(
        run.error().map(|e| e.kind),
        Some(ErrorKind::Cancelled),
        "{:?}",
        run.result
    );
    assert!(emulator.was_interrupted());
    assert!(run.outputs.is_empty());
    assert!(started.elapsed() < Duration::from_secs(20));
}

#[test]
fn errors_say_what_to_do() {
    let emulator = A1111Emulator::start(Flavor::A1111);
    emulator.require_auth("ann:secret-pass");
    let denied = txt2img(&emulator, json!({"prompt": "x", "width": 64, "height": 64}));
    assert_eq!(denied.error().unwrap().kind, ErrorKind::Unauthorized);
    assert!(
        denied
            .error()
            .unwrap()
            .hint
            .as_deref()
            .unwrap()
            .contains("SD_WEBUI_AUTH")
    );
    let mut authed = settings(&emulator.url());
    authed.set_secret("auth", "ann:secret-pass");
    let run = testing::run::<SdWebui>(
        "sd-webui",
        &authed,
        testing::job(
            "txt2img",
            "sd-webui",
            json!({"prompt": "x", "width": 64, "height": 64, "steps": 1}),
        ),
    );
    run.result.as_ref().unwrap();

    let emulator = A1111Emulator::start(Flavor::A1111);
    let sampler = txt2img(
        &emulator,
        json!({"prompt": "x", "sampler": "Imaginary", "width": 64, "height": 64}),
    );
    let err = sampler.error().unwrap();
    assert_eq!(err.kind, ErrorKind::InvalidInput);
    assert!(err.message.contains("Sampler not found"), "{}", err.message);
    for name in SAMPLERS {
        assert!(err.hint.as_deref().unwrap().contains(name), "{err:?}");
    }
    emulator.out_of_memory_next();
    let oom = txt2img(&emulator, json!({"prompt": "x", "width": 64, "height": 64}));
    assert!(
        oom.error().unwrap().message.contains("out of memory"),
        "{:?}",
        oom.result
    );
    assert_eq!(emulator.generations(), 0, "a failed request makes nothing");

    let no_api = A1111Emulator::start(Flavor::A1111);
    no_api.without_api();
    let run = txt2img(&no_api, json!({"prompt": "x"}));
    assert!(
        run.error()
            .unwrap()
            .hint
            .as_deref()
            .unwrap()
            .contains("--api"),
        "{:?}",
        run.result
    );

    let refused = testing::run::<SdWebui>(
        "sd-webui",
        &settings("http://127.0.0.1:9"),
        testing::job("txt2img", "sd-webui", json!({"prompt": "x"})),
    );
    let err = refused.error().unwrap();
    assert_eq!(err.kind, ErrorKind::Unavailable);
    assert!(err.message.contains("127.0.0.1:9"), "{}", err.message);
}

#[test]
fn a_jpeg_answer_is_named_by_its_bytes() {
    let emulator = A1111Emulator::start(Flavor::A1111);
    emulator.jpeg();
    let run = txt2img(&emulator, json!({"prompt": "x", "width": 64, "height": 64}));
    run.result.as_ref().unwrap();
    let (header, bytes) = &run.outputs[0];
    assert_eq!(
        (header.media_type.as_str(), header.extension.as_str()),
        ("image/jpeg", "jpg")
    );
    assert_eq!(&bytes[..2], &[0xFF, 0xD8]);
}

#[test]
fn img2img_sends_the_image_and_mask_and_strength() {
    let emulator = A1111Emulator::start(Flavor::A1111);
    let dir = tempfile::tempdir().unwrap();
    let image = dir.path().join("in.png");
    std::fs::write(&image, launcher_testkit::media::png(8, 8, [1, 2, 3])).unwrap();
    let mask = dir.path().join("mask.png");
    std::fs::write(&mask, launcher_testkit::media::png(8, 8, [255, 255, 255])).unwrap();
    let run = testing::run::<SdWebui>(
        "sd-webui",
        &settings(&emulator.url()),
        testing::job(
            "img2img",
            "sd-webui",
            json!({"prompt": "make it night", "image": image, "mask": mask, "strength": 0.4,
                   "width": 64, "height": 64, "steps": 2}),
        ),
    );
    run.result.as_ref().unwrap();
    let body = &emulator.bodies("/sdapi/v1/img2img")[0];
    assert_eq!(body["denoising_strength"], 0.4);
    assert_eq!(body["init_images"].as_array().unwrap().len(), 1);
    assert!(body["mask"].as_str().unwrap().len() > 10);
    assert!(
        png_text(&run.outputs[0].1, "parameters")
            .unwrap()
            .contains("Denoising strength: 0.4")
    );
}

#[test]
fn models_and_samplers_are_listed_as_json() {
    let emulator = A1111Emulator::start(Flavor::A1111);
    let run = testing::run::<SdWebui>(
        "sd-webui",
        &settings(&emulator.url()),
        testing::job("models", "sd-webui", json!({})),
    );
    let models: Value = launcher_sdk::serde_json::from_str(&run.text("models").unwrap()).unwrap();
    assert_eq!(
        models[0]["id"],
        "v1-5-pruned-emaonly.safetensors [6ce0161689]"
    );
    assert_eq!(models[0]["name"], "v1-5-pruned-emaonly");
    let run = testing::run::<SdWebui>(
        "sd-webui",
        &settings(&emulator.url()),
        testing::job("samplers", "sd-webui", json!({})),
    );
    let samplers: Value =
        launcher_sdk::serde_json::from_str(&run.text("samplers").unwrap()).unwrap();
    assert_eq!(samplers.as_array().unwrap().len(), SAMPLERS.len());
}

#[test]
fn sd_server_has_no_progress_endpoint_and_keeps_its_own_parameters() {
    let emulator = A1111Emulator::start(Flavor::SdServer);
    let run = txt2img(
        &emulator,
        json!({"prompt": "a harbour", "width": 64, "height": 64, "steps": 2, "seed": 9}),
    );
    let result = run.result.as_ref().unwrap();
    assert!(
        run.progress.iter().all(|p| p.fraction.is_none()),
        "a spinner: {:?}",
        run.progress
    );
    let text = png_text(&run.outputs[0].1, "parameters").unwrap();
    assert!(
        text.contains("stable-diffusion.cpp"),
        "the server's own text is kept: {text}"
    );
    assert_eq!(result.info["seeds"], json!([9]));
}

#[test]
fn a_real_sd_server_makes_a_png_of_the_size_asked() {
    let Some(sd) = launcher_testkit::engines::sd() else {
        return;
    };
    let run = testing::run::<SdWebui>(
        "sd-webui",
        &settings(&sd.url()),
        testing::job(
            "txt2img",
            "sd-webui",
            json!({"prompt": "a lighthouse", "width": 64, "height": 64, "steps": 2, "seed": 5}),
        ),
    );
    run.result.as_ref().expect("sd-server makes an image");
    let png = &run.outputs[0].1;
    assert_eq!(png_size(png), (64, 64));
    assert!(
        png_text(png, "parameters")
            .unwrap()
            .contains("a lighthouse")
    );
    let models = testing::run::<SdWebui>(
        "sd-webui",
        &settings(&sd.url()),
        testing::job("models", "sd-webui", json!({})),
    );
    assert!(
        models.text("models").unwrap().contains("safetensors"),
        "{:?}",
        models.text("models")
    );
    let bad = testing::run::<SdWebui>(
        "sd-webui",
        &settings(&sd.url()),
        testing::job(
            "txt2img",
            "sd-webui",
            json!({"prompt": "x", "sampler": "no such sampler", "width": 64, "height": 64, "steps": 1}),
        ),
    );
    // sd-server does not refuse an unknown sampler; whatever it does, the job ends cleanly.
    let _ = bad.result;
}
