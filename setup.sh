#!/usr/bin/env bash
# Sets launcher up on a fresh Debian or Ubuntu machine:
# - installs the offline engines the bundled plugins drive (espeak-ng, ffmpeg) when missing;
# - builds launcher with its plugins (target/release/launcher knows every plugin built beside it);
# - publishes the bundled plugins into a local, signed registry (target/local-registry) and
#   configures it as registry `local`, so `launcher search` and `launcher install` work at once.
set -euo pipefail
cd "$(dirname "$0")"

missing=()
command -v espeak-ng >/dev/null 2>&1 || missing+=(espeak-ng)
command -v ffmpeg >/dev/null 2>&1 || missing+=(ffmpeg)
if [ ${#missing[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "setup: installing ${missing[*]}" >&2
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi

cargo build --release --locked

launcher=target/release/launcher
registry=target/local-registry
# The key is made once and kept, so a registry configured earlier stays trusted.
if [ ! -f "$registry/keys/local.key" ]; then
  "$launcher" -q registry keygen "$registry/keys/local.key" >/dev/null
fi
# Published versions are immutable, so a rebuild republishes into a fresh index.
rm -rf "$registry/index"
for plugin in target/release/liblauncher_plugin_*.so; do
  # A local registry may be signed as never expiring: nobody can serve it an old copy.
  "$launcher" -q publish "$plugin" --index "$registry/index" --key "$registry/keys/local.key" \
    --expires never
done
"$launcher" -q registry add local "$registry/index" --trust "$registry/keys/local.pub"
echo "setup: built target/release/launcher; registry \`local\` offers: $("$launcher" -q search --json | grep -c '"name"') plugins" >&2
