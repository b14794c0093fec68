//! The component breakdown: which part of the model an op belongs to, from
//! its framework op path, HLO name and category. The rules live in one table
//! that the report prints as it is.

/// One rule: an op whose lowercased framework op path, short name or
/// category contains any of `needles` belongs to `component`. The first
/// matching rule wins.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ComponentRule {
    pub component: &'static str,
    pub needles: &'static [&'static str],
}

/// The rules, in the order they are tried. An op no rule matches is `other`.
pub const COMPONENT_RULES: &[ComponentRule] = &[
    ComponentRule {
        component: "collectives",
        needles: &[
            "all-reduce",
            "all_reduce",
            "all-gather",
            "all_gather",
            "reduce-scatter",
            "reduce_scatter",
            "all-to-all",
            "all_to_all",
            "collective",
            "psum",
        ],
    },
    ComponentRule {
        component: "KV cache",
        needles: &[
            "kv_cache",
            "kv-cache",
            "kvcache",
            "cache_update",
            "dynamic-update-slice",
        ],
    },
    ComponentRule {
        component: "attention",
        needles: &["attention", "attn", "flash", "rope", "rotary", "softmax"],
    },
    ComponentRule {
        component: "MLP",
        needles: &[
            "mlp",
            "gate_up",
            "down_proj",
            "up_proj",
            "ffn",
            "moe",
            "expert",
            "silu",
            "gelu",
        ],
    },
    ComponentRule {
        component: "sampling/logits",
        needles: &[
            "lm_head", "logits", "sampl", "argmax", "top_k", "topk", "top_p",
        ],
    },
    ComponentRule {
        component: "norms",
        needles: &["norm", "rsqrt"],
    },
];

/// The name of the component no rule matches.
pub const OTHER: &str = "other";

/// The component of an op, by [`COMPONENT_RULES`].
pub fn component_of(framework_op: &str, name: &str, category: &str) -> &'static str {
    let text = format!("{framework_op}\n{name}\n{category}").to_ascii_lowercase();
    COMPONENT_RULES
        .iter()
        .find(|rule| rule.needles.iter().any(|it| text.contains(it)))
        .map_or(OTHER, |rule| rule.component)
}
