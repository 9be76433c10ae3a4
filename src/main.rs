//! `bertlite`: the command-line face of the runtime. Thin: parse flags, read texts, call
//! [`bertlite::Model`], print one line per input.

use std::io::{self, BufRead, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context;
use bertlite::{EncoderOptions, Model, PrecisionChoice, Task};
use clap::{Args, Parser, Subcommand};
use serde_json::json;

/// Run BERT text classification from a bertlite bundle.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Args)]
struct Common {
    /// The bundle file written by `bertlite-tool compile`.
    #[arg(short, long)]
    model: PathBuf,
    /// Texts to process; without any, one text per line is read from stdin.
    texts: Vec<String>,
    /// Write one JSON object per line.
    #[arg(long)]
    json: bool,
    /// Each text is a sentence pair "A<TAB>B" ([CLS] A [SEP] B [SEP]).
    #[arg(long)]
    pair: bool,
    /// Threads for the matrix multiplies (default: all cores).
    #[arg(long)]
    threads: Option<usize>,
    /// Compute precision: auto (the fastest measured for this CPU), f32, f16 or int8.
    #[arg(long, default_value = "auto")]
    precision: PrecisionChoice,
    /// On an error, also print everything known about it (the graph library's full chain).
    #[arg(short, long)]
    verbose: bool,
}

#[derive(Subcommand)]
enum Command {
    /// Print the best label and its probability for each text.
    Classify {
        #[command(flatten)]
        common: Common,
        /// Print the k best labels (plain output).
        #[arg(long, default_value_t = 1)]
        top_k: usize,
    },
    /// Print the pooled embedding of each text.
    Embed {
        #[command(flatten)]
        common: Common,
        /// Print one vector per token instead (the last hidden state, TF Hub's
        /// `sequence_output`), with the tokens and their character offsets.
        #[arg(long, conflicts_with_all = ["pooled", "layers"])]
        tokens: bool,
        /// Print every layer's output per token instead (TF Hub's `encoder_outputs`, first
        /// layer to last), with the tokens; for bundles compiled with --encoder-outputs.
        #[arg(long, conflicts_with = "pooled")]
        layers: bool,
        /// Print TF Hub's `pooled_output` instead: tanh(dense([CLS])) with the checkpoint's
        /// pooler (bundles compiled with --pooled-output, or with NSP / multiple-choice heads).
        #[arg(long)]
        pooled: bool,
    },
    /// Predict the words behind each [MASK] (fill-mask head, e.g. from BertForMaskedLM).
    FillMask {
        #[command(flatten)]
        common: Common,
        /// Candidates per mask.
        #[arg(long, default_value_t = 5)]
        top_k: usize,
    },
    /// Next-sentence prediction on "A<TAB>B": is B the sentence that follows A?
    Nsp {
        #[command(flatten)]
        common: Common,
    },
    /// Named entities (token-classification head with BIO tags), with character offsets.
    Ner {
        #[command(flatten)]
        common: Common,
    },
    /// Answer "QUESTION<TAB>CONTEXT" with a span of the context (question-answering head).
    Qa {
        #[command(flatten)]
        common: Common,
        /// Tokens consecutive windows of a long context share.
        #[arg(long, default_value_t = 128)]
        stride: usize,
        /// Longest answer, in tokens.
        #[arg(long, default_value_t = 15)]
        max_answer_len: usize,
    },
    /// Multiple choice on "CONTEXT<TAB>CHOICE 1<TAB>CHOICE 2[<TAB>...]": each choice's probability.
    Choose {
        #[command(flatten)]
        common: Common,
    },
    /// Print the token ids, tokens and character offsets of each text.
    Tokenize {
        #[command(flatten)]
        common: Common,
        /// Also give the model's inputs padded (or truncated, keeping the final [SEP]) to this
        /// many tokens, as TF Hub's BERT preprocessing does: `input_word_ids`, `input_mask`,
        /// `input_type_ids`.
        #[arg(long)]
        pad_to: Option<usize>,
    },
    /// Describe the bundle and how this CPU will run it.
    Info {
        /// The bundle file.
        #[arg(short, long)]
        model: PathBuf,
        /// Threads for the matrix multiplies (default: all cores).
        #[arg(long)]
        threads: Option<usize>,
        /// Compute precision: auto (the fastest measured for this CPU), f32, f16 or int8.
        #[arg(long, default_value = "auto")]
        precision: PrecisionChoice,
        /// Also list the plan's ops and every matrix multiply with its kernel (and, on an error,
        /// its full chain).
        #[arg(short, long)]
        verbose: bool,
    },
    /// Time load and per-text latency (batch 1) on this machine.
    Bench {
        #[command(flatten)]
        common: Common,
        /// Timed runs per text (after one warm-up).
        #[arg(long, default_value_t = 10)]
        iters: usize,
        /// Run texts in batches of this many (one line per batch).
        #[arg(long, default_value_t = 1)]
        batch: usize,
        /// Cut every text to this many tokens (keeping the final [SEP]), to time exact lengths.
        #[arg(long)]
        truncate: Option<usize>,
        /// Print where the time goes, per op type, instead of latencies.
        #[arg(long)]
        profile: bool,
        /// With --profile: per node of the plan instead of per op type.
        #[arg(long, requires = "profile")]
        by_node: bool,
    },
}

/// `--threads`, default one per core (at most the runtime's maximum; a larger request is
/// refused at load with a message).
fn threads(t: Option<usize>) -> usize {
    t.unwrap_or_else(bertlite::default_threads).max(1)
}

fn load(path: &PathBuf, t: Option<usize>, precision: PrecisionChoice) -> anyhow::Result<Model> {
    Model::load_with(path, EncoderOptions { threads: threads(t), precision })
        .with_context(|| format!("cannot load {}", path.display()))
}

/// Loads a bundle for a task, failing at once (not per text) if it lacks that head.
fn load_for(path: &PathBuf, common: &Common, task: Task) -> anyhow::Result<Model> {
    let model = load(path, common.threads, common.precision)?;
    if !model.has_head(task) {
        let has = model.head_names();
        anyhow::bail!(
            "{} has no {} head (its heads: {}); compile it from a checkpoint that has one",
            path.display(),
            task.name(),
            if has.is_empty() { "none".to_owned() } else { has.join(", ") }
        );
    }
    Ok(model)
}

/// Index of the largest value.
fn argmax(v: &[f32]) -> usize {
    (0..v.len()).max_by(|&a, &b| v[a].total_cmp(&v[b])).unwrap_or(0)
}

/// Texts from the arguments, or stdin lines; a line that is not UTF-8 becomes an error for that
/// line only, so output lines stay aligned with input lines.
fn inputs<'a>(texts: &'a [String]) -> Box<dyn Iterator<Item = Result<String, String>> + 'a> {
    if !texts.is_empty() {
        return Box::new(texts.iter().cloned().map(Ok));
    }
    let stdin = io::stdin().lock();
    Box::new(stdin.split(b'\n').enumerate().map(|(i, line)| {
        let mut line = line.map_err(|e| format!("cannot read stdin: {e}"))?;
        if line.last() == Some(&b'\r') {
            line.pop();
        }
        String::from_utf8(line).map_err(|e| {
            format!(
                "line {} is not valid UTF-8 (invalid byte at offset {})",
                i + 1,
                e.utf8_error().valid_up_to()
            )
        })
    }))
}

/// Numbers as plain output: six decimals, space-separated.
fn numbers(v: &[f32]) -> String {
    v.iter().map(|x| format!("{x:.6}")).collect::<Vec<_>>().join(" ")
}

fn encode(model: &Model, text: &str, pair: bool) -> bertlite::Result<bertlite::Encoding> {
    match (pair, text.split_once('\t')) {
        (true, Some((a, b))) => model.encode_pair(a, b),
        (true, None) => Err(no_tab()),
        (false, _) => model.encode(text),
    }
}

fn no_tab() -> bertlite::Error {
    bertlite::Error::input("--pair expects \"A<TAB>B\" but the text has no tab")
}

fn run(cli: Cli) -> anyhow::Result<bool> {
    let stdout = io::stdout();
    let mut out = io::BufWriter::new(stdout.lock());
    let mut all_ok = true;
    // Runs `f` on every input, printing its line or an error line in the same place.
    let mut each = |common: &Common,
                    out: &mut dyn Write,
                    f: &mut dyn FnMut(&str) -> bertlite::Result<(String, serde_json::Value)>|
     -> anyhow::Result<()> {
        for text in inputs(&common.texts) {
            let result = text.map_err(bertlite::Error::input).and_then(|t| f(&t));
            match result {
                Ok((plain, json)) => {
                    if common.json {
                        writeln!(out, "{json}")?
                    } else {
                        writeln!(out, "{plain}")?
                    }
                }
                Err(e) => {
                    all_ok = false;
                    eprintln!("error: {e}");
                    if common.json {
                        writeln!(out, "{}", json!({ "error": e.to_string() }))?
                    } else {
                        writeln!(out)?
                    }
                }
            }
            if common.texts.is_empty() {
                out.flush()?; // interactive use: answer each line as it comes
            }
        }
        Ok(())
    };
    match &cli.command {
        Command::Classify { common, top_k } => {
            let model = load(&common.model, common.threads, common.precision)?;
            if model.head().is_none() {
                anyhow::bail!(
                    "{} has no classification head (compile it with --train FILE); `embed` works",
                    common.model.display()
                );
            }
            each(common, &mut out, &mut |text| {
                let e = encode(&model, text, common.pair)?;
                let pooled = model.embed_encodings(&[&e])?.remove(0);
                let c = model.classify_embedding(&pooled)?;
                let (label, score) = c.top();
                let plain = c
                    .scores
                    .iter()
                    .take((*top_k).max(1))
                    .map(|(l, s)| format!("{l}\t{s:.4}"))
                    .collect::<Vec<_>>()
                    .join("\t");
                let scores: serde_json::Map<String, serde_json::Value> =
                    c.scores.iter().map(|(l, s)| (l.clone(), json!(s))).collect();
                Ok((plain, json!({ "label": label, "score": score, "scores": scores })))
            })?;
        }
        Command::Embed { common, layers: true, .. } => {
            let model = load(&common.model, common.threads, common.precision)?;
            if !model.metadata().encoder.encoder_outputs && model.metadata().encoder.heads.len() > 1
            {
                anyhow::bail!(
                    "{} keeps the last layer only; compile it with --encoder-outputs for --layers",
                    common.model.display()
                );
            }
            each(common, &mut out, &mut |text| {
                let e = encode(&model, text, common.pair)?;
                let layers = model.encoder_outputs(&e)?;
                let tokens: Vec<&str> =
                    e.ids.iter().map(|&i| model.tokenizer().token(i).unwrap_or("")).collect();
                // Plain: one tab-separated field per layer, tokens' vectors joined by " | ".
                let plain = layers
                    .iter()
                    .map(|l| l.iter().map(|v| numbers(v)).collect::<Vec<_>>().join(" | "))
                    .collect::<Vec<_>>()
                    .join("\t");
                let json = json!({
                    "tokens": tokens,
                    "offsets": e.offsets.as_slice(),
                    "encoder_outputs": layers,
                });
                Ok((plain, json))
            })?;
        }
        Command::Embed { common, pooled: true, .. } => {
            let model = load_for(&common.model, common, Task::Pooler)?;
            each(common, &mut out, &mut |text| {
                let v = model.pooled_output(text)?;
                Ok((numbers(&v), json!({ "pooled_output": v })))
            })?;
        }
        Command::FillMask { common, top_k } => {
            let model = load_for(&common.model, common, Task::FillMask)?;
            each(common, &mut out, &mut |text| {
                let masks = model.fill_mask(text, (*top_k).max(1))?;
                let plain = masks
                    .iter()
                    .map(|m| {
                        m.iter()
                            .map(|p| format!("{} {:.4}", p.token_str, p.score))
                            .collect::<Vec<_>>()
                            .join("\t")
                    })
                    .collect::<Vec<_>>()
                    .join("\t|\t");
                let json: Vec<Vec<serde_json::Value>> = masks
                    .iter()
                    .map(|m| {
                        m.iter()
                            .map(|p| {
                                json!({ "token": p.token, "token_str": p.token_str,
                                        "score": p.score, "sequence": p.sequence })
                            })
                            .collect()
                    })
                    .collect();
                // One mask: its list, as HF's pipeline gives it; several: one list per mask.
                let json = if json.len() == 1 { json!(json[0]) } else { json!(json) };
                Ok((plain, json))
            })?;
        }
        Command::Nsp { common } => {
            let model = load_for(&common.model, common, Task::NextSentence)?;
            each(common, &mut out, &mut |text| {
                let (a, b) = text.split_once('\t').ok_or_else(|| {
                    bertlite::Error::input("nsp expects \"A<TAB>B\" but the text has no tab")
                })?;
                let c = model.next_sentence(a, b)?;
                let (label, score) = c.top();
                let scores: serde_json::Map<String, serde_json::Value> =
                    c.scores.iter().map(|(l, s)| (l.clone(), json!(s))).collect();
                let json = json!({ "label": label, "score": score, "scores": scores });
                Ok((format!("{label}\t{score:.4}"), json))
            })?;
        }
        Command::Ner { common } => {
            let model = load_for(&common.model, common, Task::TokenClassification)?;
            each(common, &mut out, &mut |text| {
                let entities = model.entities(text)?;
                let plain = entities
                    .iter()
                    .map(|e| {
                        format!(
                            "{} {} {}..{} {:.4}",
                            e.entity_group, e.word, e.start, e.end, e.score
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("\t");
                let json: Vec<serde_json::Value> = entities
                    .iter()
                    .map(|e| {
                        json!({ "entity_group": e.entity_group, "score": e.score, "word": e.word,
                                "start": e.start, "end": e.end })
                    })
                    .collect();
                Ok((plain, json!(json)))
            })?;
        }
        Command::Qa { common, stride, max_answer_len } => {
            let model = load_for(&common.model, common, Task::QuestionAnswering)?;
            let options = bertlite::AnswerOptions {
                stride: *stride,
                max_answer_len: *max_answer_len,
                ..Default::default()
            };
            each(common, &mut out, &mut |text| {
                let (q, c) = text.split_once('\t').ok_or_else(|| {
                    bertlite::Error::input(
                        "qa expects \"QUESTION<TAB>CONTEXT\" but the text has no tab",
                    )
                })?;
                let a = model.answer_with(q, c, options)?;
                let json =
                    json!({ "answer": a.answer, "score": a.score, "start": a.start, "end": a.end });
                Ok((format!("{}\t{:.4}\t{}..{}", a.answer, a.score, a.start, a.end), json))
            })?;
        }
        Command::Choose { common } => {
            let model = load_for(&common.model, common, Task::MultipleChoice)?;
            each(common, &mut out, &mut |text| {
                let mut parts = text.split('\t');
                let context = parts.next().unwrap_or("");
                let choices: Vec<&str> = parts.collect();
                let probs = model.choose(context, &choices)?;
                let best = argmax(&probs);
                let json = json!({ "choice": best, "scores": probs });
                Ok((format!("{best}\t{}", numbers(&probs)), json))
            })?;
        }
        Command::Embed { common, tokens: false, .. } => {
            let model = load(&common.model, common.threads, common.precision)?;
            each(common, &mut out, &mut |text| {
                let e = encode(&model, text, common.pair)?;
                let v = model.embed_encodings(&[&e])?.remove(0);
                Ok((numbers(&v), json!({ "embedding": v })))
            })?;
        }
        Command::Embed { common, tokens: true, .. } => {
            let model = load(&common.model, common.threads, common.precision)?;
            each(common, &mut out, &mut |text| {
                let t = match (common.pair, text.split_once('\t')) {
                    (true, Some((a, b))) => model.tokens_pair(a, b)?,
                    (true, None) => return Err(no_tab()),
                    (false, _) => model.tokens(text)?,
                };
                // Plain: "token v v v …" per token, tab-separated, one line per text.
                let plain = t
                    .tokens
                    .iter()
                    .zip(&t.vectors)
                    .map(|(tok, v)| format!("{tok} {}", numbers(v)))
                    .collect::<Vec<_>>()
                    .join("\t");
                let json = json!({
                    "tokens": t.tokens,
                    "offsets": t.encoding.offsets.as_slice(),
                    "sequence_output": t.vectors,
                });
                Ok((plain, json))
            })?;
        }
        Command::Tokenize { common, pad_to } => {
            if let Some(n) = pad_to
                && !(3..=bertlite::internal::MAX_SEQ_LEN).contains(n)
            {
                anyhow::bail!(
                    "--pad-to must be between 3 and {}, got {n}",
                    bertlite::internal::MAX_SEQ_LEN
                );
            }
            // Tokenizing needs no graph: read the bundle, skip building the plan.
            let bundle = bertlite::Bundle::read(&common.model)?;
            let tok = bertlite::internal::Tokenizer::new(
                bundle.metadata.tokenizer.clone(),
                &bundle.vocab,
            )?;
            each(common, &mut out, &mut |text| {
                let n = pad_to.unwrap_or(usize::MAX);
                let e = match (common.pair, text.split_once('\t')) {
                    (true, Some((a, b))) => tok.encode_pair_at_most(a, b, n),
                    (true, None) => return Err(no_tab()),
                    (false, _) => tok.encode_at_most(text, n),
                };
                let tokens: Vec<&str> = e.ids.iter().map(|&i| tok.token(i).unwrap_or("")).collect();
                let plain = tokens.join(" ");
                let mut json = json!({
                    "ids": e.ids.as_slice(),
                    "tokens": tokens,
                    "type_ids": e.type_ids.as_slice(),
                    "offsets": e.offsets.as_slice(),
                });
                if let Some(n) = *pad_to {
                    let pad = |v: &[u32], fill: u32| {
                        v.iter().copied().chain(std::iter::repeat(fill)).take(n).collect::<Vec<_>>()
                    };
                    json["input_word_ids"] = json!(pad(&e.ids, tok.pad_id()));
                    json["input_mask"] = json!(pad(&vec![1; e.len()], 0));
                    json["input_type_ids"] = json!(pad(&e.type_ids, 0));
                }
                Ok((plain, json))
            })?;
        }
        Command::Info { model, threads: t, precision, verbose } => {
            let start = Instant::now();
            let m = load(model, *t, *precision)?;
            let load_s = start.elapsed().as_secs_f64();
            let size = std::fs::metadata(model)?.len();
            writeln!(out, "{}", bertlite::internal::info(&m, size, load_s, threads(*t)))?;
            if *verbose {
                write!(out, "{}", bertlite::internal::plan_details(&m))?;
            }
        }
        Command::Bench { common, iters, batch, truncate, profile, by_node } => {
            let start = Instant::now();
            let model = load(&common.model, common.threads, common.precision)?;
            let load_ms = start.elapsed().as_secs_f64() * 1e3;
            let size = std::fs::metadata(&common.model)?.len();
            let threads = threads(common.threads);
            if common.json {
                let precision = model.encoder().precision().precision.name();
                let line = json!({ "bundle_bytes": size, "load_ms": load_ms, "threads": threads, "precision": precision });
                writeln!(out, "{line}")?;
            } else {
                writeln!(
                    out,
                    "bundle {:.2} MB, load {load_ms:.0} ms, threads {threads}, precision {}",
                    size as f64 / 1e6,
                    model.encoder().precision().precision
                )?;
            }
            let mut encodings = Vec::new();
            for text in inputs(&common.texts) {
                let text = text.map_err(bertlite::Error::input)?;
                let mut e = encode(&model, &text, common.pair)?;
                if let Some(n) = truncate {
                    e.truncate(*n);
                }
                encodings.push(e);
            }
            for group in encodings.chunks((*batch).max(1)) {
                let refs: Vec<&bertlite::Encoding> = group.iter().collect();
                if *profile {
                    let b = bertlite::internal::Batch::new(&refs, model.tokenizer().pad_id());
                    model.encoder().run(&b)?; // warm-up
                    let times = model.encoder().profile(&b, *iters, *by_node)?;
                    let total: f64 = times.iter().map(|t| t.1.as_secs_f64()).sum();
                    writeln!(
                        out,
                        "{} tokens × {}: {:.2} ms per run",
                        b.seq,
                        b.batch,
                        total * 1e3 / (*iters).max(1) as f64
                    )?;
                    for (op, t) in times {
                        let share = 100.0 * t.as_secs_f64() / total;
                        writeln!(
                            out,
                            "  {share:5.1}%  {:8.3} ms  {op}",
                            t.as_secs_f64() * 1e3 / (*iters).max(1) as f64
                        )?;
                    }
                    continue;
                }
                model.embed_encodings(&refs)?; // warm-up
                let mut times = Vec::with_capacity(*iters);
                for _ in 0..(*iters).max(1) {
                    let t = Instant::now();
                    model.embed_encodings(&refs)?;
                    times.push(t.elapsed().as_secs_f64() * 1e3);
                }
                times.sort_by(f64::total_cmp);
                let p50 = times[times.len() / 2];
                let p95 = times[(times.len() * 95 / 100).min(times.len() - 1)];
                let tokens = group.iter().map(|e| e.len()).max().unwrap_or(0);
                if common.json {
                    let line = json!({ "tokens": tokens, "batch": group.len(), "p50_ms": p50, "p95_ms": p95 });
                    writeln!(out, "{line}")?;
                } else {
                    writeln!(
                        out,
                        "{tokens:>4} tokens × {}  p50 {p50:7.2} ms  p95 {p95:7.2} ms",
                        group.len()
                    )?;
                }
            }
        }
    }
    out.flush()?;
    Ok(all_ok)
}

impl Cli {
    fn verbose(&self) -> bool {
        match &self.command {
            Command::Classify { common, .. }
            | Command::Embed { common, .. }
            | Command::FillMask { common, .. }
            | Command::Nsp { common }
            | Command::Ner { common }
            | Command::Qa { common, .. }
            | Command::Choose { common }
            | Command::Tokenize { common, .. }
            | Command::Bench { common, .. } => common.verbose,
            Command::Info { verbose, .. } => *verbose,
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let verbose = cli.verbose();
    match run(cli) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            // A closed pipe (`bertlite ... | head`) is not an error worth a message.
            if e.chain().any(|c| {
                c.downcast_ref::<io::Error>()
                    .is_some_and(|io| io.kind() == io::ErrorKind::BrokenPipe)
            }) {
                return ExitCode::SUCCESS;
            }
            eprintln!("error: {e:#}");
            let detail = e.chain().find_map(|c| c.downcast_ref::<bertlite::Error>()?.detail());
            match (verbose, detail) {
                (true, Some(detail)) => eprintln!("\n{detail}"),
                (false, Some(_)) => eprintln!("(-v for the full chain of causes)"),
                _ => {}
            }
            ExitCode::from(2)
        }
    }
}
