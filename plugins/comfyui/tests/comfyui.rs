//! The comfyui plugin against the ComfyUI emulator, through the SDK's ABI test runner.

use std::time::Duration;

use launcher_plugin_comfyui::ComfyUi;
use launcher_sdk::serde_json::{Map, Value, json};
use launcher_sdk::testing::{self, Runner};
use launcher_sdk::{DescribeRequest, ErrorKind, Job, Settings};
use launcher_testkit::emulators::comfyui::{CHECKPOINTS, ComfyEmulator, Websocket};

fn settings(emu: &ComfyEmulator) -> Settings {
    Settings::from_values([("url", emu.url())])
}

/// The graphs the emulator was sent, in order.
fn graphs(emu: &ComfyEmulator) -> Vec<Value> {
    emu.requests_to("POST", "/prompt")
        .iter()
        .map(|r| launcher_sdk::serde_json::from_slice::<Value>(&r.body).unwrap()["prompt"].clone())
        .collect()
}

fn is_png(bytes: &[u8]) -> bool {
    bytes.starts_with(b"\x89PNG\r\n\x1a\n")
}

fn txt2img(params: Value) -> Job {
    testing::job("txt2img", "comfyui", params)
}

#[test]
fn the_tool_is_ready_only_with_an_explicit_url() {
    let manifest = testing::manifest::<ComfyUi>().unwrap();
    let tool = &manifest.tools[0];
    assert_eq!(tool.require_one_of, vec![vec!["url".to_string()]]);
    let url = tool.settings.iter().find(|s| s.name == "url").unwrap();
    assert_eq!(url.default, None);
    assert_eq!(url.env.as_deref(), Some("COMFYUI_URL"));
    assert_eq!(tool.described_by, ["workflow"]);
}

#[test]
fn txt2img_runs_the_built_in_workflow_with_progress_per_node() {
    let emu = ComfyEmulator::start();
    let job = txt2img(json!({"prompt": "a red fox", "count": 2, "steps": 4, "width": 640}));
    let run = testing::run::<ComfyUi>("comfyui", &settings(&emu), job);
    let result = run.result.as_ref().expect("the job succeeds");
    let graph = &graphs(&emu)[0];
    assert_eq!(graph["6"]["inputs"]["text"], "a red fox");
    assert_eq!(graph["5"]["inputs"]["batch_size"], 2);
    assert_eq!(graph["5"]["inputs"]["width"], 640);
    assert_eq!(graph["3"]["inputs"]["steps"], 4);
    assert!(
        graph["3"]["inputs"]["seed"].as_u64().is_some(),
        "-1 becomes a real seed"
    );
    assert!(graph.get("launcher").is_none(), "the mapping is not sent");
    assert!(is_png(&run.output("image").unwrap().1));
    assert!(is_png(&run.output("image-2").unwrap().1));
    assert_eq!(run.closed, ["image", "image-2"]);
    assert!(
        run.progress
            .iter()
            .any(|p| p.message == "CLIPTextEncode (node 6)")
    );
    let sampling: Vec<f64> = run
        .progress
        .iter()
        .filter(|p| p.message.starts_with("KSampler (node 3): "))
        .filter_map(|p| p.fraction)
        .collect();
    assert_eq!(sampling, [0.25, 0.5, 0.75, 1.0]);
    let id = result.info["prompt_id"].as_str().unwrap();
    assert_eq!(run.checkpoints[0]["prompt_id"], id);
    assert!(run.checkpoints[0]["client_id"].as_str().is_some());
    assert!(emu.requests_to("GET", "/view").len() == 2);
}

#[test]
fn a_custom_workflow_describes_its_parameters_and_sets_its_nodes() {
    let dir = tempfile::tempdir().unwrap();
    let mut graph: Value =
        launcher_sdk::serde_json::from_str(include_str!("../workflows/txt2img.json")).unwrap();
    graph.as_object_mut().unwrap().remove("launcher");
    graph["3"]["inputs"]["denoise"] = json!(0.9);
    std::fs::write(dir.path().join("house.json"), graph.to_string()).unwrap();
    let mapping = json!({"description": "the house style", "params": {
        "prompt": {"node": "6", "input": "text", "required": true},
        "denoise": {"node": "3", "input": "denoise", "min": 0, "max": 1},
        "shade": {"node": ["6", "7"], "input": "text", "description": "text for both encoders"}
    }});
    std::fs::write(dir.path().join("house.launcher.json"), mapping.to_string()).unwrap();
    let path = dir.path().join("house.json").to_string_lossy().into_owned();

    let mut args = Map::new();
    args.insert("workflow".into(), json!(path));
    let request = DescribeRequest {
        tool: Some("comfyui".into()),
        config: Map::new(),
        args,
        ..Default::default()
    };
    let tools = testing::describe::<ComfyUi>(&request).unwrap();
    let denoise = tools[0]
        .params
        .iter()
        .find(|p| p.name == "denoise")
        .unwrap();
    assert_eq!(denoise.default, Some(json!(0.9)));
    assert_eq!(denoise.max, Some(1.0));
    assert!(tools[0].description.contains("the house style"));
    assert!(
        !tools[0].params.iter().any(|p| p.name == "cfg"),
        "the built-in parameters are gone"
    );

    // By name, from the workflows directory of the config.
    let emu = ComfyEmulator::start();
    let mut config = Map::new();
    config.insert("comfyui".into(), json!({"workflows": dir.path()}));
    let mut settings = settings(&emu);
    settings.set("workflows", dir.path().to_string_lossy());
    let job = txt2img(json!({"workflow": "house", "prompt": "a cat", "denoise": 0.4, "seed": 3}));
    let run = Runner::new("comfyui", &settings)
        .config(config)
        .run::<ComfyUi>(job);
    assert!(run.result.is_ok(), "{:?}", run.result);
    let sent = &graphs(&emu)[0];
    assert_eq!(sent["3"]["inputs"]["denoise"], 0.4);
    assert_eq!(sent["6"]["inputs"]["text"], "a cat");
    assert!(
        run.logs
            .iter()
            .any(|l| l.message.contains("--seed is not used")),
        "{:?}",
        run.logs
    );
    assert!(is_png(&run.output("image").unwrap().1));

    // A parameter the workflow does not have is refused before the plugin runs.
    let job = txt2img(json!({"workflow": path, "prompt": "a cat", "cfg": 3.0}));
    let run = testing::run::<ComfyUi>("comfyui", &settings, job);
    assert_eq!(run.error().unwrap().kind, ErrorKind::InvalidInput);
}

#[test]
fn history_is_polled_when_the_websocket_fails() {
    for mode in [Websocket::Refused, Websocket::DropsAtStart] {
        let emu = ComfyEmulator::start();
        emu.websocket(mode);
        let run =
            testing::run::<ComfyUi>("comfyui", &settings(&emu), txt2img(json!({"prompt": "x"})));
        assert!(run.result.is_ok(), "{mode:?}: {:?}", run.result);
        assert!(is_png(&run.output("image").unwrap().1), "{mode:?}");
        assert!(
            run.logs
                .iter()
                .any(|l| l.message.contains("polling the history")),
            "{mode:?}: {:?}",
            run.logs
        );
        assert!(!emu.requests_to("GET", "/history/").is_empty(), "{mode:?}");
    }
}

#[test]
fn cancelling_interrupts_the_prompt_and_removes_it_from_the_queue() {
    let emu = ComfyEmulator::start();
    emu.slow(Duration::from_millis(200));
    let job = txt2img(json!({"prompt": "slow", "steps": 30}));
    let run = Runner::new("comfyui", &settings(&emu))
        .watch(|run| {
            !run.progress
                .iter()
                .any(|p| p.message.starts_with("KSampler"))
        })
        .run::<ComfyUi>(job);
    assert_eq!(
        run.error().map(|e| e.kind),
        Some(ErrorKind::Cancelled),
        "{:?}",
        run.result
    );
    let id = run.checkpoints[0]["prompt_id"]
        .as_str()
        .unwrap()
        .to_string();
    let interrupts = emu.requests_to("POST", "/interrupt");
    assert_eq!(interrupts.len(), 1);
    let deletes = emu.requests_to("POST", "/queue");
    let body: Value = launcher_sdk::serde_json::from_slice(&deletes[0].body).unwrap();
    assert_eq!(body, json!({"delete": [id]}));
    assert!(
        emu.wait_finished(&id, Duration::from_secs(5)),
        "the prompt stopped"
    );
    assert!(run.outputs.is_empty());
}

#[test]
fn a_resumed_job_collects_the_outputs_without_submitting_again() {
    let emu = ComfyEmulator::start();
    let mut job = txt2img(json!({"prompt": "later"}));
    job.detach = true;
    let run = testing::run::<ComfyUi>("comfyui", &settings(&emu), job);
    assert!(run.result.is_ok(), "{:?}", run.result);
    assert!(
        run.outputs.is_empty(),
        "a detached job returns once submitted"
    );
    let checkpoint = run.checkpoints[0].clone();
    let id = checkpoint["prompt_id"].as_str().unwrap().to_string();
    assert!(emu.wait_finished(&id, Duration::from_secs(5)));

    let mut job = txt2img(json!({"prompt": "later"}));
    job.resume = Some(checkpoint);
    let run = testing::run::<ComfyUi>("comfyui", &settings(&emu), job);
    assert!(run.result.is_ok(), "{:?}", run.result);
    assert!(is_png(&run.output("image").unwrap().1));
    assert_eq!(
        emu.requests_to("POST", "/prompt").len(),
        1,
        "not submitted again"
    );
}

#[test]
fn a_resumed_job_follows_a_prompt_that_still_runs() {
    let emu = ComfyEmulator::start();
    emu.slow(Duration::from_millis(50));
    let mut job = txt2img(json!({"prompt": "later", "steps": 10}));
    job.detach = true;
    let run = testing::run::<ComfyUi>("comfyui", &settings(&emu), job);
    let checkpoint = run.checkpoints[0].clone();
    let mut job = txt2img(json!({"prompt": "later"}));
    job.resume = Some(checkpoint);
    let run = testing::run::<ComfyUi>("comfyui", &settings(&emu), job);
    assert!(run.result.is_ok(), "{:?}", run.result);
    assert!(is_png(&run.output("image").unwrap().1));
    assert_eq!(emu.requests_to("POST", "/prompt").len(), 1);
}

#[test]
fn validation_errors_name_the_node_and_list_the_checkpoints() {
    let emu = ComfyEmulator::start();
    let job = txt2img(json!({"prompt": "x", "model": "missing.safetensors"}));
    let run = testing::run::<ComfyUi>("comfyui", &settings(&emu), job);
    let err = run.error().expect("refused");
    assert_eq!(err.kind, ErrorKind::InvalidInput);
    assert!(
        err.message
            .contains("node 4 (CheckpointLoaderSimple): Value not in list"),
        "{}",
        err.message
    );
    assert!(
        err.message
            .contains("ckpt_name: 'missing.safetensors' not in"),
        "{}",
        err.message
    );
    for checkpoint in CHECKPOINTS {
        assert!(err.message.contains(checkpoint), "{}", err.message);
    }
    assert_eq!(
        emu.requests_to("POST", "/prompt").len(),
        1,
        "a refusal is not resent"
    );
}

#[test]
fn img2img_uploads_the_image_and_loads_it() {
    let emu = ComfyEmulator::start();
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("cat.png");
    let png = launcher_testkit::media::png(4, 4, [200, 10, 10]);
    std::fs::write(&source, &png).unwrap();
    let job = testing::job(
        "img2img",
        "comfyui",
        json!({"image": source.to_string_lossy(), "prompt": "as a tiger", "strength": 0.3}),
    );
    let run = testing::run::<ComfyUi>("comfyui", &settings(&emu), job);
    assert!(run.result.is_ok(), "{:?}", run.result);
    assert_eq!(emu.requests_to("POST", "/upload/image").len(), 1);
    assert_eq!(emu.input_file("cat.png").unwrap(), png);
    let graph = &graphs(&emu)[0];
    assert_eq!(graph["10"]["inputs"]["image"], "cat.png");
    assert_eq!(graph["3"]["inputs"]["denoise"], 0.3);
    assert!(is_png(&run.output("image").unwrap().1));
}

#[test]
fn models_lists_the_checkpoints() {
    let emu = ComfyEmulator::start();
    let run = testing::run::<ComfyUi>(
        "comfyui",
        &settings(&emu),
        testing::job("models", "comfyui", json!({})),
    );
    let list: Value = launcher_sdk::serde_json::from_str(&run.text("models").unwrap()).unwrap();
    let ids: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, CHECKPOINTS);
}

#[test]
fn an_identical_graph_is_cached_and_says_to_change_the_seed() {
    let emu = ComfyEmulator::start();
    let job = || txt2img(json!({"prompt": "same", "seed": 42}));
    let first = testing::run::<ComfyUi>("comfyui", &settings(&emu), job());
    assert!(first.result.is_ok(), "{:?}", first.result);
    let second = testing::run::<ComfyUi>("comfyui", &settings(&emu), job());
    let err = second.error().expect("nothing new");
    assert!(err.message.contains("--seed"), "{}", err.message);
    assert!(
        second
            .logs
            .iter()
            .any(|l| l.message.contains("from its cache")),
        "{:?}",
        second.logs
    );
}

#[test]
fn an_execution_error_names_the_node() {
    let emu = ComfyEmulator::start();
    emu.fail_node("8");
    let run = testing::run::<ComfyUi>("comfyui", &settings(&emu), txt2img(json!({"prompt": "x"})));
    let err = run.error().expect("failed");
    assert!(
        err.message.contains("node 8 (VAEDecode)"),
        "{}",
        err.message
    );
    assert!(err.message.contains("OutOfMemoryError"), "{}", err.message);
}
