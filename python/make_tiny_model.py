"""Write a tiny, randomly initialised checkpoint that sglang-jax can serve.

Everything is built here from nothing: a byte-level BPE tokenizer trained on a
few sentences of made-up text, a config.json, and bf16 weights written with
safetensors' numpy API (no torch, no model hub). The model says nothing
useful; it exists so a real server can be profiled on a laptop-sized CPU.

Two layouts are supported, because each sglang-jax version can run only one:

  qwen1  QWenLMHeadModel (transformer.h.N.attn.c_attn ...). sglang-jax
         0.0.1.post1 breaks on Qwen3ForCausalLM, and this is its other dense
         model. config.json says model_type "qwen2" only so that transformers
         can read it without remote code; sgl_jax picks the class from
         "architectures".
  qwen3  Qwen3ForCausalLM, for sglang-jax 0.0.2.

sgl_jax pads the attention head size to 128, so both layouts use 128.

Usage: python make_tiny_model.py OUT_DIR --arch qwen1|qwen3
"""

import argparse
import json
import os

import ml_dtypes
import numpy as np
from safetensors.numpy import save_file
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

HEAD_DIM = 128
VOCAB_ROWS = 2048
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
CHAT_TEMPLATE = (
    "{% for m in messages %}"
    "{{ '<|im_start|>' + m['role'] + '\n' + m['content'] + '<|im_end|>\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
# The training text: enough words that prompts and score labels such as
# " yes" and " no" become single tokens.
WORDS = (
    "yes no maybe the a an is are was of to in on for with and or not this that "
    "hello world how you what where when why who which capital city france paris "
    "london tell me story about tpu gpu cpu server profile trace jax python rust "
    "great product terrible experience positive negative review question answer "
    "apple car bus dog fruit item pick best one two three four five six seven "
    "eight nine ten user assistant system . , ! ?"
).split()


def train_tokenizer(out_dir, rng):
    sentences = [" ".join(rng.choice(WORDS, size=24)) for _ in range(3000)]
    sentences += [chr(code) * 3 for code in range(32, 127)]
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_ROWS - 16,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(sentences, trainer)
    wrapped = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        model_max_length=2048,
    )
    wrapped.chat_template = CHAT_TEMPLATE
    wrapped.save_pretrained(out_dir)
    return tokenizer


def random_matrix(rng, rows, cols):
    return (rng.standard_normal((rows, cols)) * 0.02).astype(np.float32)


def qwen1_model(rng, heads, layers, ffn):
    hidden = heads * HEAD_DIM
    config = {
        "architectures": ["QWenLMHeadModel"],
        "model_type": "qwen2",
        "hidden_size": hidden,
        "intermediate_size": ffn,
        "num_attention_heads": heads,
        "num_key_value_heads": heads,
        "num_hidden_layers": layers,
        "layer_norm_epsilon": 1e-6,
        "rms_norm_eps": 1e-6,
        "rope_theta": 10000.0,
        "tie_word_embeddings": False,
        "use_sliding_window": False,
    }
    weights = {
        "transformer.wte.weight": random_matrix(rng, VOCAB_ROWS, hidden),
        "transformer.ln_f.weight": np.ones(hidden, np.float32),
        "lm_head.weight": random_matrix(rng, VOCAB_ROWS, hidden),
    }
    # QWen's MLP splits intermediate_size in two halves (w1 and w2).
    half = ffn // 2
    for layer in range(layers):
        p = "transformer.h.%d." % layer
        weights[p + "ln_1.weight"] = np.ones(hidden, np.float32)
        weights[p + "ln_2.weight"] = np.ones(hidden, np.float32)
        weights[p + "attn.c_attn.weight"] = random_matrix(rng, 3 * hidden, hidden)
        weights[p + "attn.c_attn.bias"] = np.zeros(3 * hidden, np.float32)
        weights[p + "attn.c_proj.weight"] = random_matrix(rng, hidden, hidden)
        weights[p + "mlp.w1.weight"] = random_matrix(rng, half, hidden)
        weights[p + "mlp.w2.weight"] = random_matrix(rng, half, hidden)
        weights[p + "mlp.c_proj.weight"] = random_matrix(rng, hidden, half)
    return config, weights


def qwen3_model(rng, heads, layers, ffn):
    hidden = 64
    kv_heads = max(1, heads // 2)
    config = {
        "architectures": ["Qwen3ForCausalLM"],
        "model_type": "qwen3",
        "attention_bias": False,
        "head_dim": HEAD_DIM,
        "hidden_act": "silu",
        "hidden_size": hidden,
        "intermediate_size": ffn,
        "num_attention_heads": heads,
        "num_key_value_heads": kv_heads,
        "num_hidden_layers": layers,
        "max_window_layers": layers,
        "rms_norm_eps": 1e-6,
        "rope_scaling": None,
        "rope_theta": 10000.0,
        "sliding_window": None,
        "use_sliding_window": False,
        "tie_word_embeddings": True,
        "use_cache": True,
    }
    q_width, kv_width = heads * HEAD_DIM, kv_heads * HEAD_DIM
    weights = {
        "model.embed_tokens.weight": random_matrix(rng, VOCAB_ROWS, hidden),
        "model.norm.weight": np.ones(hidden, np.float32),
    }
    for layer in range(layers):
        p = "model.layers.%d." % layer
        weights[p + "input_layernorm.weight"] = np.ones(hidden, np.float32)
        weights[p + "post_attention_layernorm.weight"] = np.ones(hidden, np.float32)
        weights[p + "self_attn.q_proj.weight"] = random_matrix(rng, q_width, hidden)
        weights[p + "self_attn.k_proj.weight"] = random_matrix(rng, kv_width, hidden)
        weights[p + "self_attn.v_proj.weight"] = random_matrix(rng, kv_width, hidden)
        weights[p + "self_attn.o_proj.weight"] = random_matrix(rng, hidden, q_width)
        weights[p + "self_attn.q_norm.weight"] = np.ones(HEAD_DIM, np.float32)
        weights[p + "self_attn.k_norm.weight"] = np.ones(HEAD_DIM, np.float32)
        weights[p + "mlp.gate_proj.weight"] = random_matrix(rng, ffn, hidden)
        weights[p + "mlp.up_proj.weight"] = random_matrix(rng, ffn, hidden)
        weights[p + "mlp.down_proj.weight"] = random_matrix(rng, hidden, ffn)
    return config, weights


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir")
    parser.add_argument("--arch", choices=["qwen1", "qwen3"], required=True)
    parser.add_argument("--heads", type=int, default=2)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--ffn", type=int, default=512)
    args = parser.parse_args()

    rng = np.random.default_rng(20261123)
    os.makedirs(args.out_dir, exist_ok=True)
    tokenizer = train_tokenizer(args.out_dir, rng)
    build = qwen1_model if args.arch == "qwen1" else qwen3_model
    config, weights = build(rng, args.heads, args.layers, args.ffn)
    special = {
        "bos_token_id": tokenizer.token_to_id("<|endoftext|>"),
        "eos_token_id": tokenizer.token_to_id("<|im_end|>"),
        "pad_token_id": tokenizer.token_to_id("<|endoftext|>"),
    }
    config.update(special)
    config.update({
        "vocab_size": VOCAB_ROWS,
        "max_position_embeddings": 2048,
        "torch_dtype": "bfloat16",
    })
    with open(os.path.join(args.out_dir, "config.json"), "w") as f:
        json.dump(config, f, indent=2, sort_keys=True)
    with open(os.path.join(args.out_dir, "generation_config.json"), "w") as f:
        json.dump(dict(special, do_sample=False), f, indent=2, sort_keys=True)
    weights = {name: w.astype(ml_dtypes.bfloat16) for name, w in weights.items()}
    save_file(weights, os.path.join(args.out_dir, "model.safetensors"), metadata={"format": "pt"})
    n_params = sum(w.size for w in weights.values())
    print("wrote %s: %s, %d parameters, %d tokens in the tokenizer"
          % (args.out_dir, config["architectures"][0], n_params, tokenizer.get_vocab_size()))


if __name__ == "__main__":
    main()
