"""Writes a Stable Diffusion 1.5 checkpoint with random weights, for stable-diffusion.cpp's server.

Usage: sd_checkpoint.py OUT.safetensors [--list]

The layout is the original single-file one (not diffusers'): the UNet under
`model.diffusion_model.`, the CLIP ViT-L/14 text encoder under
`cond_stage_model.transformer.text_model.` and the KL autoencoder under `first_stage_model.`.
Every name and shape is derived here from the architecture's hyper-parameters, the way the
networks build their layers; nothing is copied from a real checkpoint and no weight is
downloaded. Values are fp16 from a fixed seed: weights normal * 0.02, biases 0, normalisation
scales 1 and shifts 0, small enough that two sampling steps stay finite. The picture that comes
out is noise; the point is that the engine loads it and runs its real pipeline.

`--list` prints the names and shapes instead of writing anything.
"""

import os
import sys
import time

import numpy as np

SEED = 1505
SCALE = 0.02

# UNet (ldm.modules.diffusionmodules.openaimodel.UNetModel as configured for v1-inference).
UNET_IN = 4
UNET_OUT = 4
MODEL_CHANNELS = 320
TIME_EMBED = MODEL_CHANNELS * 4
CHANNEL_MULT = (1, 2, 4, 4)
NUM_RES_BLOCKS = 2
ATTENTION_RESOLUTIONS = (4, 2, 1)
NUM_HEADS = 8
CONTEXT_DIM = 768
TRANSFORMER_DEPTH = 1

# CLIP ViT-L/14 text encoder.
VOCAB = 49408
POSITIONS = 77
WIDTH = 768
LAYERS = 12
MLP = WIDTH * 4

# AutoencoderKL (f=8, z=4).
VAE_CH = 128
VAE_MULT = (1, 2, 4, 4)
VAE_RES_BLOCKS = 2
Z_CHANNELS = 4
IMAGE_CHANNELS = 3


class Layout:
    """Collects (name, shape, kind) in definition order; kind picks the initial values."""

    def __init__(self) -> None:
        self.tensors: list[tuple[str, tuple[int, ...], str]] = []

    def add(self, name: str, shape: tuple[int, ...], kind: str) -> None:
        self.tensors.append((name, tuple(int(s) for s in shape), kind))

    def linear(self, name: str, n_in: int, n_out: int, bias: bool = True) -> None:
        self.add(f"{name}.weight", (n_out, n_in), "weight")
        if bias:
            self.add(f"{name}.bias", (n_out,), "zero")

    def conv(self, name: str, n_in: int, n_out: int, kernel: int) -> None:
        self.add(f"{name}.weight", (n_out, n_in, kernel, kernel), "weight")
        self.add(f"{name}.bias", (n_out,), "zero")

    def norm(self, name: str, channels: int) -> None:
        """GroupNorm or LayerNorm: a scale and a shift per channel."""
        self.add(f"{name}.weight", (channels,), "one")
        self.add(f"{name}.bias", (channels,), "zero")


# --- UNet ------------------------------------------------------------------------------------


def unet_resblock(t: Layout, name: str, n_in: int, n_out: int) -> None:
    t.norm(f"{name}.in_layers.0", n_in)
    t.conv(f"{name}.in_layers.2", n_in, n_out, 3)
    t.linear(f"{name}.emb_layers.1", TIME_EMBED, n_out)
    t.norm(f"{name}.out_layers.0", n_out)
    t.conv(f"{name}.out_layers.3", n_out, n_out, 3)
    if n_in != n_out:
        t.conv(f"{name}.skip_connection", n_in, n_out, 1)


def cross_attention(t: Layout, name: str, dim: int, context: int) -> None:
    heads_dim = (dim // NUM_HEADS) * NUM_HEADS
    t.linear(f"{name}.to_q", dim, heads_dim, bias=False)
    t.linear(f"{name}.to_k", context, heads_dim, bias=False)
    t.linear(f"{name}.to_v", context, heads_dim, bias=False)
    t.linear(f"{name}.to_out.0", heads_dim, dim)


def spatial_transformer(t: Layout, name: str, channels: int) -> None:
    # SD 1.x projects in and out with 1x1 convolutions (use_linear_in_transformer is false).
    t.norm(f"{name}.norm", channels)
    t.conv(f"{name}.proj_in", channels, channels, 1)
    for d in range(TRANSFORMER_DEPTH):
        block = f"{name}.transformer_blocks.{d}"
        cross_attention(t, f"{block}.attn1", channels, channels)  # self-attention
        cross_attention(t, f"{block}.attn2", channels, CONTEXT_DIM)  # on the text
        # GEGLU feed-forward: one projection to twice the inner width, then back.
        inner = channels * 4
        t.linear(f"{block}.ff.net.0.proj", channels, inner * 2)
        t.linear(f"{block}.ff.net.2", inner, channels)
        for n in (1, 2, 3):
            t.norm(f"{block}.norm{n}", channels)
    t.conv(f"{name}.proj_out", channels, channels, 1)


def unet(t: Layout) -> None:
    p = "model.diffusion_model"
    t.linear(f"{p}.time_embed.0", MODEL_CHANNELS, TIME_EMBED)
    t.linear(f"{p}.time_embed.2", TIME_EMBED, TIME_EMBED)

    t.conv(f"{p}.input_blocks.0.0", UNET_IN, MODEL_CHANNELS, 3)
    skips = [MODEL_CHANNELS]
    ch, ds, idx = MODEL_CHANNELS, 1, 0
    for level, mult in enumerate(CHANNEL_MULT):
        for _ in range(NUM_RES_BLOCKS):
            idx += 1
            unet_resblock(t, f"{p}.input_blocks.{idx}.0", ch, mult * MODEL_CHANNELS)
            ch = mult * MODEL_CHANNELS
            if ds in ATTENTION_RESOLUTIONS:
                spatial_transformer(t, f"{p}.input_blocks.{idx}.1", ch)
            skips.append(ch)
        if level != len(CHANNEL_MULT) - 1:
            idx += 1
            t.conv(f"{p}.input_blocks.{idx}.0.op", ch, ch, 3)  # strided downsample
            skips.append(ch)
            ds *= 2

    unet_resblock(t, f"{p}.middle_block.0", ch, ch)
    spatial_transformer(t, f"{p}.middle_block.1", ch)
    unet_resblock(t, f"{p}.middle_block.2", ch, ch)

    idx = 0
    for level in reversed(range(len(CHANNEL_MULT))):
        mult = CHANNEL_MULT[level]
        for j in range(NUM_RES_BLOCKS + 1):
            skip = skips.pop()
            unet_resblock(t, f"{p}.output_blocks.{idx}.0", ch + skip, mult * MODEL_CHANNELS)
            ch = mult * MODEL_CHANNELS
            sub = 1
            if ds in ATTENTION_RESOLUTIONS:
                spatial_transformer(t, f"{p}.output_blocks.{idx}.1", ch)
                sub = 2
            if level > 0 and j == NUM_RES_BLOCKS:
                t.conv(f"{p}.output_blocks.{idx}.{sub}.conv", ch, ch, 3)  # upsample
                ds //= 2
            idx += 1
    assert not skips and ds == 1

    t.norm(f"{p}.out.0", ch)
    t.conv(f"{p}.out.2", MODEL_CHANNELS, UNET_OUT, 3)


# --- CLIP text encoder -------------------------------------------------------------------------


def clip_text(t: Layout) -> None:
    p = "cond_stage_model.transformer.text_model"
    t.add(f"{p}.embeddings.token_embedding.weight", (VOCAB, WIDTH), "weight")
    t.add(f"{p}.embeddings.position_embedding.weight", (POSITIONS, WIDTH), "weight")
    for i in range(LAYERS):
        layer = f"{p}.encoder.layers.{i}"
        for proj in ("k_proj", "v_proj", "q_proj", "out_proj"):
            t.linear(f"{layer}.self_attn.{proj}", WIDTH, WIDTH)
        t.norm(f"{layer}.layer_norm1", WIDTH)
        t.linear(f"{layer}.mlp.fc1", WIDTH, MLP)
        t.linear(f"{layer}.mlp.fc2", MLP, WIDTH)
        t.norm(f"{layer}.layer_norm2", WIDTH)
    t.norm(f"{p}.final_layer_norm", WIDTH)


# --- VAE ----------------------------------------------------------------------------------------


def vae_resblock(t: Layout, name: str, n_in: int, n_out: int) -> None:
    t.norm(f"{name}.norm1", n_in)
    t.conv(f"{name}.conv1", n_in, n_out, 3)
    t.norm(f"{name}.norm2", n_out)
    t.conv(f"{name}.conv2", n_out, n_out, 3)
    if n_in != n_out:
        t.conv(f"{name}.nin_shortcut", n_in, n_out, 1)


def vae_mid(t: Layout, name: str, ch: int) -> None:
    vae_resblock(t, f"{name}.block_1", ch, ch)
    t.norm(f"{name}.attn_1.norm", ch)
    for proj in ("q", "k", "v", "proj_out"):
        t.conv(f"{name}.attn_1.{proj}", ch, ch, 1)
    vae_resblock(t, f"{name}.block_2", ch, ch)


def vae(t: Layout) -> None:
    p = "first_stage_model"
    # Encoder: image -> mean and log-variance of z.
    t.conv(f"{p}.encoder.conv_in", IMAGE_CHANNELS, VAE_CH, 3)
    ch = VAE_CH
    for level, mult in enumerate(VAE_MULT):
        for j in range(VAE_RES_BLOCKS):
            vae_resblock(t, f"{p}.encoder.down.{level}.block.{j}", ch, VAE_CH * mult)
            ch = VAE_CH * mult
        if level != len(VAE_MULT) - 1:
            t.conv(f"{p}.encoder.down.{level}.downsample.conv", ch, ch, 3)
    vae_mid(t, f"{p}.encoder.mid", ch)
    t.norm(f"{p}.encoder.norm_out", ch)
    t.conv(f"{p}.encoder.conv_out", ch, 2 * Z_CHANNELS, 3)
    t.conv(f"{p}.quant_conv", 2 * Z_CHANNELS, 2 * Z_CHANNELS, 1)

    # Decoder: z -> image, one more res block per level than the encoder.
    t.conv(f"{p}.post_quant_conv", Z_CHANNELS, Z_CHANNELS, 1)
    ch = VAE_CH * VAE_MULT[-1]
    t.conv(f"{p}.decoder.conv_in", Z_CHANNELS, ch, 3)
    vae_mid(t, f"{p}.decoder.mid", ch)
    for level in reversed(range(len(VAE_MULT))):
        for j in range(VAE_RES_BLOCKS + 1):
            vae_resblock(t, f"{p}.decoder.up.{level}.block.{j}", ch, VAE_CH * VAE_MULT[level])
            ch = VAE_CH * VAE_MULT[level]
        if level != 0:
            t.conv(f"{p}.decoder.up.{level}.upsample.conv", ch, ch, 3)
    t.norm(f"{p}.decoder.norm_out", ch)
    t.conv(f"{p}.decoder.conv_out", ch, IMAGE_CHANNELS, 3)


def layout() -> Layout:
    t = Layout()
    unet(t)
    clip_text(t)
    vae(t)
    names = [n for n, _, _ in t.tensors]
    assert len(names) == len(set(names)), "a tensor name is defined twice"
    return t


def values(shape: tuple[int, ...], kind: str, rng: np.random.Generator) -> np.ndarray:
    if kind == "zero":
        return np.zeros(shape, dtype=np.float16)
    if kind == "one":
        return np.ones(shape, dtype=np.float16)
    w = rng.standard_normal(shape, dtype=np.float32)
    w *= SCALE
    return w.astype(np.float16)


def main() -> int:
    args = sys.argv[1:]
    if len(args) not in (1, 2) or (len(args) == 2 and args[1] != "--list"):
        print(__doc__, file=sys.stderr)
        return 2
    t = layout()
    if len(args) == 2:
        for name, shape, _ in t.tensors:
            print(name, list(shape))
        return 0

    from safetensors.numpy import save_file

    out = args[0]
    t0 = time.monotonic()
    rng = np.random.default_rng(SEED)
    tensors = {name: values(shape, kind, rng) for name, shape, kind in t.tensors}
    count = sum(a.size for a in tensors.values())
    tmp = f"{out}.tmp"
    save_file(tensors, tmp, metadata={"format": "pt", "generator": "launcher sd_checkpoint.py"})
    os.replace(tmp, out)
    print(
        f"sd_checkpoint: {len(tensors)} tensors, {count / 1e6:.0f} M parameters, "
        f"{os.path.getsize(out) / 2**30:.2f} GiB in {time.monotonic() - t0:.1f} s -> {out}",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
