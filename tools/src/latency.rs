//! The pruning budget's latency model ([`crate::budget::Costs`]) measured on the machine that
//! compiles: what an attention multiply-add and a layer's fixed work cost against an int8
//! linear multiply-add depends on the CPU (on an AMX host the linears run ~1.4× faster than on
//! one with AVX-512 VNNI only, the f32 attention does not), so costs fitted on one host chose
//! too few head cuts on another (results/compression.md, session 27).
//!
//! Three int8 bundles of the checkpoint, unpruned, with half of every layer's FFN neurons cut
//! and with half of its heads cut (plain rounding and no repair: only their speed counts), run
//! by the runtime on one thread at the budget's own texts, taking turns run by run. The costs
//! are what explains the three times ([`Costs::solve`]).

use std::time::Instant;

use anyhow::Result;
use bertlite::{Bundle, EncoderOptions, Model};

use crate::budget::{Costs, Lengths, parts};
use crate::bundle::build_bundle_with;
use crate::graph::Precision;
use crate::model::Checkpoint;
use crate::prune::{Importance, LayerCut, apply};

/// Texts timed (the budget's first ones), and runs of each per bundle after a warm-up.
const TEXTS: usize = 16;
const RUNS: usize = 5;

/// The measured costs on `texts` (the budget's, as they will run), or the fitted ones where
/// the times do not fit the model (said in `origin`).
pub fn measure(ckpt: &mut Checkpoint, imp: &Importance, texts: &[&str]) -> Result<Costs> {
    let texts = &texts[..texts.len().min(TEXTS)];
    if texts.is_empty() {
        return Ok(Costs::fitted());
    }
    let n = ckpt.bert.layers.len();
    let plans = [
        vec![LayerCut::NONE; n],
        vec![LayerCut { ffn: 0.5, ..LayerCut::NONE }; n],
        vec![LayerCut { heads: 0.5, ..LayerCut::NONE }; n],
    ];
    let mut models = Vec::new();
    for plan in &plans {
        let mut bert = ckpt.bert.clone();
        apply(&mut bert, imp, plan, false)?;
        // The bundle is built from the checkpoint: the cut encoder swapped in for the build.
        let original = std::mem::replace(&mut ckpt.bert, bert);
        let bundle = build_bundle_with(ckpt, Precision::Int8, false, None);
        ckpt.bert = original;
        let bytes = bundle?.to_bytes()?;
        let options = EncoderOptions { threads: 1, ..Default::default() };
        models.push(Model::from_bundle(Bundle::from_bytes(&bytes)?, options)?);
    }
    let encodings =
        texts.iter().map(|t| models[0].encode(t)).collect::<bertlite::Result<Vec<_>>>()?;
    let lengths = Lengths::of(&encodings);
    // Per text, the three bundles take turns run by run (a slow spell of this shared machine
    // then falls on all three), and each text gives the cut bundles' times as ratios of the
    // unpruned one's (medians of its runs); the medians of those ratios over the texts are
    // what the costs are solved from. Summed times, one bundle's runs after another's, let
    // one drift move a bundle by 40% (282 against 200 ms for the same 16 texts).
    let mut ratios: [Vec<f64>; 2] = [Vec::new(), Vec::new()];
    let mut ms = [0f64; 3];
    for e in &encodings {
        let mut runs = [[0f64; RUNS]; 3];
        for model in &models {
            model.embed_encodings(&[e])?;
        }
        for run in 0..RUNS {
            for (model, runs) in models.iter().zip(&mut runs) {
                let t = Instant::now();
                model.embed_encodings(&[e])?;
                runs[run] = t.elapsed().as_secs_f64() * 1e3;
            }
        }
        let medians = runs.map(|mut r| {
            r.sort_by(f64::total_cmp);
            r[RUNS / 2]
        });
        for (sum, m) in ms.iter_mut().zip(medians) {
            *sum += m;
        }
        ratios[0].push(medians[1] / medians[0]);
        ratios[1].push(medians[2] / medians[0]);
    }
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let [r1, r2] = ratios.map(median);
    let units = [0, 1, 2].map(|i| parts(&ckpt.bert, &plans[i], lengths));
    let tokens = encodings.iter().map(|e| e.len()).sum::<usize>() as f64 / encodings.len() as f64;
    let cpu = cpu_name();
    Ok(match Costs::solve(units, [1.0, r1, r2]) {
        Some((attention, fixed)) => Costs {
            attention,
            fixed,
            origin: format!(
                "measured on this machine ({cpu}, 1 thread: {} texts of {tokens:.0} tokens, \
                 {:.1} / {:.1} / {:.1} ms unpruned / FFN -50% / heads -50%, median ratios \
                 {r1:.3} / {r2:.3})",
                encodings.len(),
                ms[0],
                ms[1],
                ms[2]
            ),
        },
        None => Costs {
            origin: format!(
                "{}: measured here, {:.1} / {:.1} / {:.1} ms unpruned / FFN -50% / heads -50% \
                 (median ratios {r1:.3} / {r2:.3}) did not fit the model",
                Costs::fitted().origin,
                ms[0],
                ms[1],
                ms[2]
            ),
            ..Costs::fitted()
        },
    })
}

/// The CPU's model name (Linux), for the record.
fn cpu_name() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            let line = info.lines().find(|l| l.starts_with("model name"))?;
            Some(line.split(':').nth(1)?.trim().to_string())
        })
        .unwrap_or_else(|| std::env::consts::ARCH.to_string())
}
