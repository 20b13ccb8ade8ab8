//! Conversations through the real binary: `run chat` keeps each turn, `-c` and `--cid`
//! continue one, `launcher chat` holds a session, `launcher conversations` shows them.

use launcher_testkit::cli::TestContext;
use launcher_testkit::test_context;

fn context() -> TestContext {
    let ctx = test_context!();
    ctx.add_plugin("launcher_fixture_remote", "remote");
    ctx
}

#[test]
fn chat_turns_are_kept_and_continued_with_the_same_tool() {
    let ctx = context();
    let first = ctx.run(["run", "parrot", "Why is the sky blue?"]);
    first.success();
    assert_eq!(
        first.stdout.trim(),
        "you said: Why is the sky blue? (turn 1)"
    );

    // `-c` continues the latest conversation with the tool that answered it.
    let second = ctx.run(["run", "chat", "-c", "And at sunset?", "--json"]);
    second.success();
    let report = second.json();
    assert_eq!(report["tool"], "parrot");
    assert_eq!(
        report["outputs"][0]["text"],
        "you said: And at sunset? (turn 2)"
    );
    let id = report["conversation"].as_str().unwrap().to_string();

    let listed = ctx.run(["conversations", "--json"]);
    listed.success();
    let listed = listed.json();
    assert_eq!(listed.as_array().unwrap().len(), 1);
    assert_eq!(listed[0]["id"], id.as_str());
    assert_eq!(listed[0]["messages"], 4);
    assert_eq!(listed[0]["model"], "parrot-1");

    // A new chat without -c starts a new conversation; --cid goes back to the first.
    ctx.run(["run", "parrot", "Something else"]).success();
    let third = ctx.run(["run", "chat", "--cid", &id[..id.len() - 3], "Once more"]);
    third.success();
    assert_eq!(third.stdout.trim(), "you said: Once more (turn 3)");
    let shown = ctx.run(["conversations", &id]);
    shown.success();
    assert!(
        shown.stdout.contains("Why is the sky blue?"),
        "{}",
        shown.stdout
    );
    assert!(shown.stdout.contains("(turn 3)"), "{}", shown.stdout);
    assert_eq!(
        ctx.run(["conversations", "--json"])
            .json()
            .as_array()
            .unwrap()
            .len(),
        2
    );
}

#[test]
fn continuing_what_does_not_exist_says_so() {
    let ctx = context();
    let none = ctx.run(["run", "chat", "-c", "hello?"]);
    none.expect_code(3);
    assert!(
        none.stderr.contains("no conversation to continue"),
        "{}",
        none.stderr
    );
    ctx.run(["run", "chat", "--cid", "nosuch", "hello?"])
        .expect_code(3);
    ctx.run(["run", "parrot", "hi"]).success();
    // Only a chat continues a conversation.
    ctx.run(["run", "tts", "-c", "hello"]).expect_code(2);
    let empty = test_context!();
    let listing = empty.run(["conversations"]);
    listing.success();
    assert!(
        listing.stderr.contains("no conversations yet"),
        "{}",
        listing.stderr
    );
}

#[test]
fn a_piped_chat_session_is_one_conversation() {
    let ctx = context();
    let out = ctx.run_with_stdin(["chat", "--tool", "parrot"], b"first\n\nsecond\n");
    out.success();
    assert_eq!(
        out.stdout,
        "you said: first (turn 1)\nyou said: second (turn 2)\n"
    );
    let listed = ctx.run(["conversations", "--json"]).json();
    assert_eq!(listed.as_array().unwrap().len(), 1);
    assert_eq!(listed[0]["messages"], 4);
    assert_eq!(listed[0]["tool"], "parrot");
}
