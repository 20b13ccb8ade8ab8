#!/usr/bin/env python3
"""Grows a launcher home holding one installed plugin to N: `replicate.py HOME N`.

Each copy is what `launcher install --path` would have left for a distinct plugin: its own
version directory (library and plugin.toml, the mtime kept so the lockfile's fingerprint
matches), a plugin.toml naming the copy and its tool, and a lockfile entry. Installing 99
libraries for real would take minutes of child-process validation and measure nothing
`launcher list` does.
"""

import os
import shutil
import sys
import tomllib


def main():
    if len(sys.argv) != 3:
        sys.exit("usage: replicate.py HOME N")
    home, count = sys.argv[1], int(sys.argv[2])
    lock_path = os.path.join(home, "plugins.lock")
    with open(lock_path, "rb") as f:
        lock = tomllib.load(f)
    if len(lock["plugins"]) != 1:
        sys.exit(f"replicate.py: expected one installed plugin in {lock_path}")
    original = lock["plugins"][0]
    name, version = original["name"], original["version"]
    source_dir = os.path.join(home, original["dir"])
    with open(os.path.join(source_dir, "plugin.toml")) as f:
        plugin_toml = f.read()
    manifest = tomllib.loads(plugin_toml)
    if len(manifest["tools"]) != 1 or manifest["tools"][0]["id"] != name:
        sys.exit("replicate.py: expected a plugin with one tool named like the plugin")

    entries = []
    for i in range(2, count + 1):
        copy = f"{name}-{i:03d}"
        rel_dir = f"plugins/{copy}/{version}"
        target = os.path.join(home, rel_dir)
        # copy2 keeps the modification time to the nanosecond, like `cp -p`.
        shutil.copytree(source_dir, target, copy_function=shutil.copy2)
        text = plugin_toml.replace(f'\nname = "{name}"\n', f'\nname = "{copy}"\n', 1)
        text = text.replace(f'\nid = "{name}"\n', f'\nid = "{copy}"\n', 1)
        with open(os.path.join(target, "plugin.toml"), "w") as f:
            f.write(text)
        library = os.stat(os.path.join(target, original["library"]))
        entries.append(
            "\n[[plugins]]\n"
            f'name = "{copy}"\n'
            f'version = "{version}"\n'
            f'requirement = "{original["requirement"]}"\n'
            f'target = "{original["target"]}"\n'
            f'abi = {original["abi"]}\n'
            f'library = "{original["library"]}"\n'
            f'library_sha256 = "{original["library_sha256"]}"\n'
            f"library_size = {library.st_size}\n"
            f"library_mtime = {library.st_mtime_ns}\n"
            f'dir = "{rel_dir}"\n'
            "\n[plugins.source]\n"
            f'kind = "{original["source"]["kind"]}"\n'
            f'path = "{original["source"]["path"]}"\n'
        )
    with open(lock_path, "a") as f:
        f.write("".join(entries))


if __name__ == "__main__":
    main()
