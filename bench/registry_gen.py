#!/usr/bin/env python3
"""Writes a registry index of many made-up plugins, for timing `launcher search`.

    registry_gen.py DIR --plugins N --template LINE_FILE [--word W]... [--task T]...

DIR gets what registry/README.md describes: `config.json`, one index file per plugin name at
its sparse path, and `catalog.jsonl` (the lines of every index file; the one file search
reads). LINE_FILE is an index file written by `launcher publish`; its first line supplies the
ABI and target triple this launcher accepts, so the generated lines fit the binary measured.

Each plugin has 1 to 3 versions, and some carry lines that search must pass over: a newer
pre-release, a newer yanked version, a newer line for another ABI, for a launcher that does not
exist yet, or without a build for this target. Every plugin keeps one line that fits, so all N
are listed. Signatures, checksums and sizes are random; search checks none of them.

Prints JSON on stdout: what search should answer, worked out here independently of launcher
(`listed`: name -> version for no query; `word:W` and `task:T`: the names each should list),
so the benchmark can check the counts it times.
"""

import argparse
import base64
import json
import os
import random
import sys

CATEGORY_TASKS = {
    "audio": ["tts", "voices", "transcribe", "music", "sfx", "voice-clone"],
    "image": ["txt2img", "img2img", "upscale", "inpaint", "caption", "remove-bg"],
    "video": ["txt2video", "img2video", "compose", "lipsync", "subtitle"],
    "text": ["chat", "summarize", "translate", "embed", "complete"],
}
VENDORS = """acme aurora basalt beacon birch cedar cinder cobalt comet coral cypress delta
drift ember falcon fern flint fjord garnet glacier granite harbor hazel helix indigo iris
jasper juniper kelp lumen lynx maple marble meadow mesa nebula nimbus onyx opal orbit pebble
pine prism quartz raven reef ridge sable sage sierra slate solstice spruce summit tidal topaz
tundra umber vale velvet willow zephyr""".split()
THINGS = """studio forge engine works lab kit bridge hub link relay cloud local lite pro max
mini flow core box deck nest port wave cast loom mill""".split()
ADJECTIVES = """fast local open neural expressive multilingual lightweight offline hosted
streaming batch realistic stylised high-quality low-latency private""".split()
SUBJECTS = {
    "audio": ["speech synthesis", "speech recognition", "voice cloning", "music generation",
              "sound effects", "audio narration"],
    "image": ["image generation", "diffusion models", "image upscaling", "photo editing",
              "background removal", "image captioning"],
    "video": ["video generation", "slideshow rendering", "lip sync", "subtitle burning",
              "video editing"],
    "text": ["chat models", "summarisation", "machine translation", "text embeddings",
             "speech-to-text cleanup"],
}
SERVICES = """Azure OpenAI ElevenLabs Replicate Stability HuggingFace Ollama Google Amazon
Coqui Piper Whisper ComfyUI Runway Midjourney DeepL Anthropic Mistral Cohere""".split()


def index_path(name):
    """Cargo's sparse-index path, as registry/src/index.rs computes it."""
    if len(name) <= 2:
        return f"{len(name)}/{name}"
    if len(name) == 3:
        return f"3/{name[0]}/{name}"
    return f"{name[:2]}/{name[2:4]}/{name}"


def plugin_names(rng, count):
    """`count` distinct valid names, a few of 1 to 3 characters so every sparse layout occurs."""
    short = [chr(c) for c in range(ord("a"), ord("z") + 1)]
    short += [a + b for a in "abcdefgh" for b in "xyz0123"]
    short += [a + b + c for a in "qrstuvw" for b in "aeiou" for c in "kmn"]
    rng.shuffle(short)
    names = short[: min(len(short), count // 50)]
    seen = set(names)
    while len(names) < count:
        category = rng.choice(list(CATEGORY_TASKS))
        name = f"{rng.choice(VENDORS)}-{rng.choice(THINGS)}-{rng.choice(CATEGORY_TASKS[category])}"
        if name in seen:
            name = f"{name}-{rng.randint(2, 99)}"
        if name in seen:
            continue
        seen.add(name)
        names.append(name)
    return names


def signature(rng, name, version, target):
    """A minisign-shaped signature of realistic length; nothing verifies it in search."""
    sig = base64.b64encode(b"ED" + rng.randbytes(72)).decode()
    global_sig = base64.b64encode(rng.randbytes(64)).decode()
    return (
        "untrusted comment: signature from launcher publish\n"
        f"{sig}\n"
        f"trusted comment: launcher-plugin name={name} version={version} target={target}\n"
        f"{global_sig}\n"
    )


def make_line(rng, name, version, abi, target, host="*", yanked=False, with_target=True):
    categories = [rng.choice(list(CATEGORY_TASKS))]
    if rng.random() < 0.15:
        categories.append(rng.choice([c for c in CATEGORY_TASKS if c != categories[0]]))
    tasks = sorted({t for c in categories for t in rng.sample(CATEGORY_TASKS[c], rng.randint(1, 2))})
    subject = rng.choice(SUBJECTS[categories[0]])
    desc = f"{rng.choice(ADJECTIVES).capitalize()} {subject} with {rng.choice(SERVICES)}"
    triple = target if with_target else "riscv64gc-unknown-linux-gnu"
    return {
        "v": 1,
        "name": name,
        "vers": version,
        "abi": abi,
        "host": host,
        "desc": desc,
        "categories": categories,
        "tasks": tasks,
        "targets": {
            triple: {
                "sha256": rng.randbytes(32).hex(),
                "size": rng.randint(200_000, 20_000_000),
                "sig": signature(rng, name, version, triple),
            }
        },
        "yanked": yanked,
    }


def plugin_lines(rng, name, abi, target):
    """1 to 3 lines that fit, plus, for some plugins, one newer line search must skip."""
    major, minor = rng.randint(0, 3), rng.randint(0, 9)
    lines = [make_line(rng, name, f"{major}.{minor + i}.{rng.randint(0, 5)}", abi, target,
                       host=rng.choice(["*", ">=0.1"]))
             for i in range(rng.randint(1, 3))]
    newer = f"{major + 1}.0.0"
    trap = rng.random()
    if trap < 0.04:
        lines.append(make_line(rng, name, newer + "-beta.1", abi, target))
    elif trap < 0.08:
        lines.append(make_line(rng, name, newer, abi, target, yanked=True))
    elif trap < 0.10:
        lines.append(make_line(rng, name, newer, abi + 1, target))
    elif trap < 0.12:
        lines.append(make_line(rng, name, newer, abi, target, host=">=99"))
    elif trap < 0.14:
        lines.append(make_line(rng, name, newer, abi, target, with_target=False))
    return lines


def fits(line, abi, target):
    """Whether a bare-name resolution may pick `line` (registry/src/resolve.rs)."""
    return ("-" not in line["vers"] and line["abi"] == abi and line["host"] != ">=99"
            and target in line["targets"] and not line["yanked"])


def version_key(vers):
    return tuple(int(p) for p in vers.split("-")[0].split("."))


def matches_words(line, words):
    """search.rs's text match: every word in `name desc tasks`, lowercased."""
    haystack = f"{line['name']} {line['desc'].lower()} {' '.join(line['tasks']).lower()}"
    return all(w in haystack for w in words)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("dir")
    parser.add_argument("--plugins", type=int, required=True)
    parser.add_argument("--template", required=True)
    parser.add_argument("--word", action="append", default=[])
    parser.add_argument("--task", action="append", default=[])
    parser.add_argument("--seed", type=int, default=3)
    args = parser.parse_args()

    with open(args.template) as f:
        template = json.loads(f.readline())
    abi, target = template["abi"], next(iter(template["targets"]))

    # A fixed seed: every run times the same index.
    rng = random.Random(args.seed)
    os.makedirs(args.dir, exist_ok=True)
    with open(os.path.join(args.dir, "config.json"), "w") as f:
        json.dump({"dl": "archives/{name}/{name}-{version}-{target}.tar.gz"}, f)

    expected = {"listed": {}, "lines": 0}
    for word in args.word:
        expected[f"word:{word}"] = []
    for task in args.task:
        expected[f"task:{task}"] = []
    with open(os.path.join(args.dir, "catalog.jsonl"), "w") as catalog:
        for name in plugin_names(rng, args.plugins):
            lines = plugin_lines(rng, name, abi, target)
            text = "".join(json.dumps(line, separators=(",", ":")) + "\n" for line in lines)
            path = os.path.join(args.dir, index_path(name))
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "w") as f:
                f.write(text)
            catalog.write(text)
            expected["lines"] += len(lines)

            best = max((l for l in lines if fits(l, abi, target)), key=lambda l: version_key(l["vers"]))
            expected["listed"][name] = best["vers"]
            for word in args.word:
                if matches_words(best, word.lower().split()):
                    expected[f"word:{word}"].append(name)
            for task in args.task:
                if any(t.lower() == task.lower() for t in best["tasks"]):
                    expected[f"task:{task}"].append(name)
    json.dump(expected, sys.stdout)


if __name__ == "__main__":
    main()
