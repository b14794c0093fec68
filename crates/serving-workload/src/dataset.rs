//! Datasets: the rows a serving load is made of, each a prompt (text or
//! token ids), its length in tokens and the number of tokens to generate.
//!
//! `random`, `sharegpt` and `shared_prefix` follow `bench_serving`'s
//! samplers (`random-ids`, `sharegpt`, `generated-shared-prefix`); with
//! the same seed, `random` and `sharegpt` give the same rows as
//! `bench_serving` does. Token counts come from the model's own tokenizer,
//! which the caller passes in as a [`Tokenizer`]; files are passed in as
//! their text, so nothing here does IO.

use serde::{Deserialize, Serialize};

use crate::pyrand::{NumpyRandom, PyRandom};

/// The model's tokenizer, as the datasets need it.
pub trait Tokenizer {
    /// Token ids of `text`, special tokens added as the tokenizer's
    /// post-processor adds them (Hugging Face's `encode` default).
    fn encode(&self, text: &str) -> Result<Vec<u32>, String>;
    /// The text of `ids`, special tokens kept.
    fn decode(&self, ids: &[u32]) -> Result<String, String>;
    /// The model vocabulary's size, added tokens not counted (Hugging
    /// Face's `vocab_size`).
    fn vocab_size(&self) -> u32;
}

/// What a request sends as its prompt.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Prompt {
    Text(String),
    /// Sent as `input_ids`: the server does not tokenize it again.
    Ids(Vec<u32>),
}

/// One request of a dataset.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DatasetRow {
    pub prompt: Prompt,
    /// The prompt's length as the dataset counts it: tokens of the text
    /// (`sharegpt`, `jsonl`, `shared-prefix`, `fixed`), the drawn length
    /// (`random`, as `bench_serving` counts it), the ids given (`jsonl`).
    pub input_len: u32,
    /// Tokens to generate (`max_new_tokens`, with `ignore_eos`).
    pub output_len: u32,
}

/// Why a dataset could not be made. One line each.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum DatasetError {
    #[error("{what} is not valid JSON: {detail}")]
    Json { what: String, detail: String },
    #[error("line {line}: {detail}")]
    Line { line: usize, detail: String },
    #[error("the dataset has {found} usable rows, fewer than the {wanted} asked for")]
    TooFew { found: usize, wanted: usize },
    #[error("the tokenizer failed: {0}")]
    Tokenizer(String),
    #[error("{0}")]
    Invalid(String),
}

fn encode(tokenizer: &dyn Tokenizer, text: &str) -> Result<Vec<u32>, DatasetError> {
    tokenizer.encode(text).map_err(DatasetError::Tokenizer)
}

fn decode(tokenizer: &dyn Tokenizer, ids: &[u32]) -> Result<String, DatasetError> {
    tokenizer.decode(ids).map_err(DatasetError::Tokenizer)
}

/// The settings of [`random`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RandomParams {
    pub num_prompts: usize,
    pub input_len: u32,
    pub output_len: u32,
    pub range_ratio: f64,
}

/// `bench_serving --dataset-name random-ids`: input lengths drawn
/// uniformly from `[max(floor(input_len * r), 1), input_len]`, output
/// lengths from `[floor(output_len * r), output_len]`, and for request `i`
/// with a drawn offset `o` the token ids `(o + i + j) % vocab_size` for
/// `j` in `0..input_len`, decoded into text. Draws come from `rng` in
/// `bench_serving`'s order: the input lengths, the output lengths, the
/// offsets. `input_len` of each row is the drawn length (the server may
/// count the decoded text differently; it reports its own count).
pub fn random(
    tokenizer: &dyn Tokenizer,
    params: &RandomParams,
    rng: &mut NumpyRandom,
) -> Result<Vec<DatasetRow>, DatasetError> {
    let draws = RandomDraws::draw(tokenizer, params, rng)?;
    (0..draws.len()).map(|i| draws.row(i, tokenizer)).collect()
}

/// The draws of [`random`], from which each row is made when it is asked
/// for: a few numbers per row instead of its text, for datasets too long
/// to hold.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RandomDraws {
    input_lens: Vec<u32>,
    output_lens: Vec<u32>,
    offsets: Vec<u32>,
    vocab: u32,
}

impl RandomDraws {
    /// Draws from `rng` what [`random`] draws, in its order.
    pub fn draw(
        tokenizer: &dyn Tokenizer,
        params: &RandomParams,
        rng: &mut NumpyRandom,
    ) -> Result<RandomDraws, DatasetError> {
        let n = params.num_prompts;
        let low = |len: u32, min: i64| ((len as f64 * params.range_ratio) as i64).max(min);
        let input_lens = rng.randint(low(params.input_len, 1), params.input_len as i64 + 1, n);
        let output_lens = rng.randint(low(params.output_len, 0), params.output_len as i64 + 1, n);
        let vocab = tokenizer.vocab_size();
        if vocab == 0 {
            return Err(DatasetError::Invalid(
                "the tokenizer has an empty vocabulary".to_owned(),
            ));
        }
        let offsets = rng.randint(0, vocab as i64, n);
        // Every draw lies in its range, which a u32 holds.
        let narrow = |v: Vec<i64>| v.into_iter().map(|x| x as u32).collect();
        Ok(RandomDraws {
            input_lens: narrow(input_lens),
            output_lens: narrow(output_lens),
            offsets: narrow(offsets),
            vocab,
        })
    }

    /// How many rows there are.
    pub fn len(&self) -> usize {
        self.input_lens.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.input_lens.is_empty()
    }

    /// The drawn prompt and output lengths of row `i`.
    pub fn lengths(&self, i: usize) -> (u32, u32) {
        (self.input_lens[i], self.output_lens[i])
    }

    /// Row `i`: the ids `(o + i + j) % vocab_size` for `j` in
    /// `0..input_len`, decoded into text.
    pub fn row(&self, i: usize, tokenizer: &dyn Tokenizer) -> Result<DatasetRow, DatasetError> {
        let (vocab, start) = (self.vocab as u64, self.offsets[i] as u64 + i as u64);
        let ids: Vec<u32> = (0..self.input_lens[i] as u64)
            .map(|j| ((start + j) % vocab) as u32)
            .collect();
        Ok(DatasetRow {
            prompt: Prompt::Text(decode(tokenizer, &ids)?),
            input_len: self.input_lens[i],
            output_len: self.output_lens[i],
        })
    }
}

/// The first two turns of every ShareGPT conversation with at least two:
/// the `conversations` (or `conversation`) list's `value`s.
fn sharegpt_pairs(text: &str) -> Result<Vec<(String, String)>, DatasetError> {
    #[derive(Deserialize)]
    struct Turn {
        value: String,
    }
    #[derive(Deserialize)]
    struct Conversation {
        #[serde(default)]
        conversations: Option<Vec<Turn>>,
        #[serde(default)]
        conversation: Option<Vec<Turn>>,
    }
    let data: Vec<Conversation> = serde_json::from_str(text).map_err(|err| DatasetError::Json {
        what: "the ShareGPT file".to_owned(),
        detail: err.to_string(),
    })?;
    Ok(data
        .into_iter()
        .filter_map(|c| {
            let mut turns = c.conversations.or(c.conversation)?;
            if turns.len() < 2 {
                return None;
            }
            turns.truncate(2);
            let second = turns.pop()?.value;
            let first = turns.pop()?.value;
            Some((first, second))
        })
        .collect())
}

/// `bench_serving --dataset-name sharegpt`: the conversations with two
/// turns or more, shuffled with Python's `random` seeded as given, then in
/// that order each first turn as the prompt and the second turn's token
/// count (or `output_len` when given) as the output length, skipping rows
/// where either is below 2 tokens, until `num_prompts` rows.
pub fn sharegpt(
    text: &str,
    tokenizer: &dyn Tokenizer,
    num_prompts: usize,
    output_len: Option<u32>,
    rng: &mut PyRandom,
) -> Result<Vec<DatasetRow>, DatasetError> {
    if output_len.is_some_and(|n| n < 4) {
        return Err(DatasetError::Invalid(
            "an output length below 4 tokens is too small for the ShareGPT dataset (bench_serving refuses it too)"
                .to_owned(),
        ));
    }
    let mut pairs = sharegpt_pairs(text)?;
    rng.shuffle(&mut pairs);
    let mut rows = Vec::with_capacity(num_prompts);
    for (prompt, completion) in pairs {
        if rows.len() == num_prompts {
            break;
        }
        let input_len = encode(tokenizer, &prompt)?.len() as u32;
        let output_len = match output_len {
            Some(n) => n,
            None => encode(tokenizer, &completion)?.len() as u32,
        };
        if input_len < 2 || output_len < 2 {
            continue;
        }
        rows.push(DatasetRow {
            prompt: Prompt::Text(prompt),
            input_len,
            output_len,
        });
    }
    if rows.len() < num_prompts {
        return Err(DatasetError::TooFew {
            found: rows.len(),
            wanted: num_prompts,
        });
    }
    Ok(rows)
}

/// Checks the layout of a ShareGPT file without a tokenizer: the JSON
/// parses, and at least one conversation has two turns. Tokens are
/// counted later, by [`sharegpt`], once the model's tokenizer is known.
pub fn check_sharegpt(text: &str) -> Result<(), DatasetError> {
    if sharegpt_pairs(text)?.is_empty() {
        return Err(DatasetError::Invalid(
            "no conversation has two turns".to_owned(),
        ));
    }
    Ok(())
}

/// Checks every line of a `jsonl` file without a tokenizer: each non-blank
/// line parses and holds exactly one of `prompt` and `input_ids`, and the
/// file holds a row. [`jsonl`] then counts the tokens.
pub fn check_jsonl(text: &str) -> Result<(), DatasetError> {
    let mut rows = 0usize;
    for (idx, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let at = |detail: String| DatasetError::Line {
            line: idx + 1,
            detail,
        };
        let row: JsonlRow = serde_json::from_str(line).map_err(|err| at(err.to_string()))?;
        match (&row.prompt, &row.input_ids) {
            (Some(text), None) if text.is_empty() => {
                return Err(at("the prompt is empty".to_owned()));
            }
            (None, Some(ids)) if ids.is_empty() => {
                return Err(at("the prompt is empty".to_owned()));
            }
            (Some(_), None) | (None, Some(_)) => rows += 1,
            _ => {
                return Err(at(
                    "expected exactly one of \"prompt\" and \"input_ids\"".to_owned()
                ));
            }
        }
    }
    if rows == 0 {
        return Err(DatasetError::Invalid("the file holds no rows".to_owned()));
    }
    Ok(())
}

/// One line of a `jsonl` dataset.
#[derive(Deserialize)]
struct JsonlRow {
    #[serde(default)]
    prompt: Option<String>,
    #[serde(default)]
    input_ids: Option<Vec<u32>>,
    output_len: u32,
}

/// A JSON-lines file, one `{"prompt": TEXT | "input_ids": [IDS],
/// "output_len": N}` per line, in file order; blank lines are skipped. The
/// first `num_prompts` rows are used (all of them when `None`).
pub fn jsonl(
    text: &str,
    tokenizer: &dyn Tokenizer,
    num_prompts: Option<usize>,
) -> Result<Vec<DatasetRow>, DatasetError> {
    let mut rows = Vec::new();
    for (idx, line) in text.lines().enumerate() {
        if num_prompts.is_some_and(|n| rows.len() == n) {
            break;
        }
        if line.trim().is_empty() {
            continue;
        }
        let at = |detail: String| DatasetError::Line {
            line: idx + 1,
            detail,
        };
        let row: JsonlRow = serde_json::from_str(line).map_err(|err| at(err.to_string()))?;
        let (prompt, input_len) = match (row.prompt, row.input_ids) {
            (Some(text), None) => {
                let n = encode(tokenizer, &text)?.len() as u32;
                (Prompt::Text(text), n)
            }
            (None, Some(ids)) => {
                let n = ids.len() as u32;
                (Prompt::Ids(ids), n)
            }
            _ => {
                return Err(at(
                    "expected exactly one of \"prompt\" and \"input_ids\"".to_owned()
                ));
            }
        };
        if input_len == 0 {
            return Err(at("the prompt is empty".to_owned()));
        }
        rows.push(DatasetRow {
            prompt,
            input_len,
            output_len: row.output_len,
        });
    }
    match num_prompts {
        Some(wanted) if rows.len() < wanted => Err(DatasetError::TooFew {
            found: rows.len(),
            wanted,
        }),
        _ if rows.is_empty() => Err(DatasetError::Invalid("the file holds no rows".to_owned())),
        _ => Ok(rows),
    }
}

/// The settings of [`shared_prefix`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SharedPrefixParams {
    pub num_prompts: usize,
    pub groups: usize,
    /// Tokens drawn for each group's system prompt.
    pub prefix_len: u32,
    /// Tokens drawn for each question.
    pub question_len: u32,
    pub output_len: u32,
}

/// `bench_serving --dataset-name generated-shared-prefix`: `groups`
/// system prompts and then one question per request, each made of token
/// ids drawn with Python's `random.choices` from the vocabulary and
/// decoded; request `i` belongs to group `i % groups` and sends
/// `"{system}\n\n{question}"`; the rows are then shuffled. Unlike
/// `bench_serving`, which draws from the tokenizer's vocabulary dictionary
/// in its (unordered) iteration order, the ids are drawn from
/// `0..vocab_size` in order, so the same seed always gives the same rows.
pub fn shared_prefix(
    tokenizer: &dyn Tokenizer,
    params: &SharedPrefixParams,
    rng: &mut PyRandom,
) -> Result<Vec<DatasetRow>, DatasetError> {
    if params.groups == 0 {
        return Err(DatasetError::Invalid(
            "the shared-prefix dataset needs at least one group".to_owned(),
        ));
    }
    let vocab: Vec<u32> = (0..tokenizer.vocab_size()).collect();
    let mut gen_prompt = |len: u32| decode(tokenizer, &rng.choices(&vocab, len as usize));
    let systems = (0..params.groups)
        .map(|_| gen_prompt(params.prefix_len))
        .collect::<Result<Vec<_>, _>>()?;
    let questions = (0..params.num_prompts)
        .map(|_| gen_prompt(params.question_len))
        .collect::<Result<Vec<_>, _>>()?;
    let mut rows = Vec::with_capacity(params.num_prompts);
    for (idx, question) in questions.into_iter().enumerate() {
        let text = format!("{}\n\n{question}", systems[idx % params.groups]);
        let input_len = encode(tokenizer, &text)?.len() as u32;
        rows.push(DatasetRow {
            prompt: Prompt::Text(text),
            input_len,
            output_len: params.output_len,
        });
    }
    rng.shuffle(&mut rows);
    Ok(rows)
}

/// The same prompt `n` times (the seed session's workload).
pub fn fixed(
    tokenizer: Option<&dyn Tokenizer>,
    prompt: &str,
    n: usize,
    output_len: u32,
) -> Result<Vec<DatasetRow>, DatasetError> {
    let input_len = match tokenizer {
        Some(tokenizer) => encode(tokenizer, prompt)?.len() as u32,
        None => 0,
    };
    Ok(vec![
        DatasetRow {
            prompt: Prompt::Text(prompt.to_owned()),
            input_len,
            output_len,
        };
        n
    ])
}

/// The rows in ShareGPT's layout, so that `bench_serving --dataset-name
/// sharegpt` (or `--dataset sharegpt:FILE`) replays exactly these
/// prompts: the first turn is the prompt as sent (ids are decoded), the
/// second a filler text that the same tokenizer counts as exactly
/// `output_len` tokens, so that the replay asks for the same output
/// lengths. The filler is one token's text repeated; the first token (by
/// id) whose repetition keeps its count is used, checked on every row.
pub fn to_sharegpt(rows: &[DatasetRow], tokenizer: &dyn Tokenizer) -> Result<String, DatasetError> {
    #[derive(Serialize)]
    struct Turn<'a> {
        from: &'static str,
        value: &'a str,
    }
    #[derive(Serialize)]
    struct Conversation<'a> {
        id: String,
        conversations: [Turn<'a>; 2],
    }
    let mut filler = Filler::new(tokenizer);
    let mut texts = Vec::with_capacity(rows.len());
    for row in rows {
        let prompt = match &row.prompt {
            Prompt::Text(text) => text.clone(),
            Prompt::Ids(ids) => decode(tokenizer, ids)?,
        };
        let completion = filler.text(row.output_len)?;
        texts.push((prompt, completion));
    }
    let conversations: Vec<Conversation<'_>> = texts
        .iter()
        .enumerate()
        .map(|(idx, (prompt, completion))| Conversation {
            id: format!("sglprof-{idx}"),
            conversations: [
                Turn {
                    from: "human",
                    value: prompt,
                },
                Turn {
                    from: "gpt",
                    value: completion,
                },
            ],
        })
        .collect();
    let mut text = serde_json::to_string_pretty(&conversations).expect("plain data serialises");
    text.push('\n');
    Ok(text)
}

/// Texts of an exact token count.
struct Filler<'a> {
    tokenizer: &'a dyn Tokenizer,
    /// The candidate token's text, once one worked.
    unit: Option<String>,
    next_id: u32,
}

impl<'a> Filler<'a> {
    fn new(tokenizer: &'a dyn Tokenizer) -> Filler<'a> {
        Filler {
            tokenizer,
            unit: None,
            next_id: 0,
        }
    }

    fn text(&mut self, n: u32) -> Result<String, DatasetError> {
        // Special tokens a post-processor adds count in the replay too.
        let extra = encode(self.tokenizer, "")?.len() as u32;
        if n <= extra {
            return Ok(String::new());
        }
        let repeat = (n - extra) as usize;
        for _ in 0..256 {
            if let Some(unit) = &self.unit {
                let text = unit.repeat(repeat);
                if encode(self.tokenizer, &text)?.len() as u32 == n {
                    return Ok(text);
                }
                self.unit = None;
            }
            let vocab = self.tokenizer.vocab_size();
            while self.unit.is_none() && self.next_id < vocab {
                let id = self.next_id;
                self.next_id += 1;
                let unit = decode(self.tokenizer, &[id])?;
                if !unit.trim().is_empty()
                    && !unit.contains('\u{fffd}')
                    && encode(self.tokenizer, &unit.repeat(3))?.len() as u32 == 3 + extra
                {
                    self.unit = Some(unit);
                }
            }
            if self.unit.is_none() {
                break;
            }
        }
        Err(DatasetError::Invalid(format!(
            "no text of exactly {n} tokens could be made for the saved dataset's second turn"
        )))
    }
}
