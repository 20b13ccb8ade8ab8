//! Image tools through the real binary: routing by priority and readiness, `--to image`,
//! `list --category image`, a ComfyUI workflow's parameters in `--help`, and a detached
//! ComfyUI job resumed.

use launcher_testkit::emulators::comfyui::ComfyEmulator;
use launcher_testkit::emulators::openai::{Flavor, OpenAiEmulator};
use launcher_testkit::test_context;

#[test]
fn image_tools_are_listed_and_routed_by_readiness() {
    let mut ctx = test_context!();
    let listed = ctx.run(["list", "--category", "image", "--json"]).json();
    let ids: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_str().unwrap())
        .collect();
    for id in ["comfyui", "openai"] {
        assert!(ids.contains(&id), "{id} in {ids:?}");
    }
    // Nothing is set up: no image tool is ready, and the error says what to set.
    let none = ctx.run(["run", "txt2img", "a lighthouse"]);
    none.expect_code(4);

    let comfy = ComfyEmulator::start();
    ctx.env("COMFYUI_URL", comfy.url());
    let out = ctx.run([
        "run",
        "--to",
        "image",
        "--text",
        "a lighthouse",
        "--width",
        "64",
        "--height",
        "64",
        "--steps",
        "2",
        "--json",
    ]);
    out.success();
    let report = out.json();
    assert_eq!(
        (report["tool"].as_str(), report["task"].as_str()),
        (Some("comfyui"), Some("txt2img"))
    );
    let path = report["outputs"][0]["path"].as_str().unwrap();
    let png = std::fs::read(ctx.work.path().join(path)).unwrap();
    assert_eq!(&png[1..4], b"PNG");

    // A cloud image service with its key is still not the default over a local one.
    let openai = OpenAiEmulator::start(Some("sk-images-0123456789"), Flavor::OpenAi, None);
    ctx.env("OPENAI_API_KEY", "sk-images-0123456789")
        .env("OPENAI_BASE_URL", openai.base_url());
    let routed = ctx.run(["run", "txt2img", "a storm", "-v", "--json"]);
    routed.success();
    assert_eq!(routed.json()["tool"], "comfyui");
    assert!(
        routed.stderr.contains("passed over `openai` (cloud"),
        "{}",
        routed.stderr
    );
    let chosen = ctx.run([
        "run", "txt2img", "--tool", "openai", "a storm", "--json", "--width", "1024", "--height",
        "1024",
    ]);
    chosen.success();
    assert_eq!(chosen.json()["tool"], "openai");
}

#[test]
fn a_workflow_file_brings_its_parameters_to_help_and_the_graph() {
    let mut ctx = test_context!();
    let comfy = ComfyEmulator::start();
    ctx.env("COMFYUI_URL", comfy.url());
    let builtin = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../plugins/comfyui/workflows/txt2img.json");
    let mut workflow: serde_json::Value =
        serde_json::from_slice(&std::fs::read(builtin).unwrap()).unwrap();
    // A user's own mapping: only the prompt and a "grain" wired to the sampler's seed.
    workflow["launcher"] = serde_json::json!({
        "params": {
            "prompt": {"node": "6", "input": "text", "required": true},
            "grain": {"node": "3", "input": "seed", "type": "integer", "default": 7}
        }
    });
    std::fs::write(ctx.work_file("mine.json"), workflow.to_string()).unwrap();
    let help = ctx.run(["run", "comfyui", "--workflow", "mine.json", "--help"]);
    help.success();
    assert!(help.stdout.contains("--grain"), "{}", help.stdout);
    let out = ctx.run([
        "run",
        "comfyui",
        "--workflow",
        "mine.json",
        "a quiet harbour",
        "--grain",
        "42",
        "--json",
    ]);
    out.success();
    let prompts = comfy.requests_to("POST", "/prompt");
    let graph: serde_json::Value = serde_json::from_slice(&prompts.last().unwrap().body).unwrap();
    assert_eq!(graph["prompt"]["3"]["inputs"]["seed"], 42);
    assert_eq!(graph["prompt"]["6"]["inputs"]["text"], "a quiet harbour");
    // A parameter the workflow does not map is refused before anything is sent.
    ctx.run([
        "run",
        "comfyui",
        "--workflow",
        "mine.json",
        "x",
        "--cfg",
        "3",
    ])
    .expect_code(2);
    assert_eq!(comfy.requests_to("POST", "/prompt").len(), 1);
}

#[test]
fn a_detached_comfyui_job_is_collected_by_resume() {
    let mut ctx = test_context!();
    let comfy = ComfyEmulator::start();
    ctx.env("COMFYUI_URL", comfy.url());
    let out = ctx.run([
        "run",
        "comfyui",
        "a lighthouse",
        "--detach",
        "-o",
        "light.png",
    ]);
    out.success();
    assert!(!ctx.work_file("light.png").exists());
    let id = launcher_testkit::cli::job_id(&out.stderr);
    ctx.run(["run", "--resume", &id]).success();
    let png = std::fs::read(ctx.work_file("light.png")).unwrap();
    assert_eq!(&png[1..4], b"PNG");
    assert_eq!(
        comfy.requests_to("POST", "/prompt").len(),
        1,
        "resumed, not resubmitted"
    );
}

/// The real thing: stable-diffusion.cpp's sd-server with a random-weight checkpoint.
#[test]
fn a_real_sd_server_draws_through_the_binary() {
    let Some(sd) = launcher_testkit::engines::sd() else {
        return;
    };
    let mut ctx = test_context!();
    ctx.env("SD_WEBUI_URL", sd.url());
    let listed = ctx.run(["list", "--category", "image"]);
    assert!(listed.stdout.contains("sd-webui"), "{}", listed.stdout);
    let out = ctx.run([
        "run",
        "txt2img",
        "--tool",
        "sd-webui",
        "a lighthouse",
        "--width",
        "64",
        "--height",
        "64",
        "--steps",
        "2",
        "--json",
    ]);
    out.success();
    let report = out.json();
    let path = report["outputs"][0]["path"].as_str().unwrap();
    let png = std::fs::read(ctx.work.path().join(path)).unwrap();
    assert_eq!(&png[1..4], b"PNG");
    assert_eq!(u32::from_be_bytes(png[16..20].try_into().unwrap()), 64);
    assert_eq!(u32::from_be_bytes(png[20..24].try_into().unwrap()), 64);
    let text = launcher_sdk::media::png_text(&png, "parameters").expect("a parameters chunk");
    assert!(text.starts_with("a lighthouse"), "{text}");
    let models = ctx.run(["run", "models", "--tool", "sd-webui", "--json"]);
    models.success();
    assert!(models.stdout.contains("safetensors"), "{}", models.stdout);
    // A bad request gets a clear error: a size the manifest refuses never reaches the server.
    let bad = ctx.run(["run", "txt2img", "--tool", "sd-webui", "x", "--width", "8"]);
    bad.expect_code(5);
    assert!(bad.stderr.contains("--width"), "{}", bad.stderr);
}
