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
    let load_before = CpuTicks::now();
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
    // Other processes running meanwhile slow the memory-bound fixed work more than the int8
    // linears: a plan timed beside a qemu run read the fixed costs 2.3× high and cut deeper
    // than it had to (results/performance.md, session 34). Said where the costs are recorded.
    let busy = load_before.zip(CpuTicks::now()).map(|(a, b)| b.others_since(&a));
    let busy_note = match busy {
        Some(cores) if cores > BUSY_CORES => {
            let note = format!(
                "; other processes used {cores:.1} cores meanwhile, which inflates the fixed \
                 costs: time on an idle machine"
            );
            eprintln!("warning: latency model timed on a busy machine{note}");
            note
        }
        _ => String::new(),
    };
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
                 {r1:.3} / {r2:.3}{busy_note})",
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

/// Other processes' use above which the timing is called out (in cores, averaged over it).
const BUSY_CORES: f64 = 0.25;

/// Clock ticks from Linux's /proc: the whole machine's busy and total ticks (all CPUs), and
/// this process's (all its threads).
#[derive(Debug, Clone, Copy, PartialEq)]
struct CpuTicks {
    busy: u64,
    total: u64,
    cpus: u64,
    own: u64,
}

impl CpuTicks {
    /// None where /proc is not there or not as expected (not Linux): then nothing is said.
    fn now() -> Option<CpuTicks> {
        let stat = std::fs::read_to_string("/proc/stat").ok()?;
        let own = std::fs::read_to_string("/proc/self/stat").ok()?;
        CpuTicks::parse(&stat, &own)
    }

    fn parse(stat: &str, own: &str) -> Option<CpuTicks> {
        // `cpu  user nice system idle iowait irq softirq steal ...` (guest time is in user).
        let mut all = stat.lines().next()?.split_whitespace();
        if all.next()? != "cpu" {
            return None;
        }
        let t: Vec<u64> = all.take(8).map(str::parse).collect::<Result<_, _>>().ok()?;
        let [user, nice, system, idle, iowait, irq, softirq, steal] = t[..] else { return None };
        let busy = user + nice + system + irq + softirq + steal;
        let cpus = stat.lines().filter(|l| l.starts_with("cpu") && !l.starts_with("cpu ")).count();
        // `pid (comm) state ...`: comm may hold spaces, so fields count from the last ')';
        // utime and stime are the 14th and 15th.
        let mut fields = own.rsplit_once(')')?.1.split_whitespace().skip(11);
        let utime: u64 = fields.next()?.parse().ok()?;
        let stime: u64 = fields.next()?.parse().ok()?;
        Some(CpuTicks {
            busy,
            total: busy + idle + iowait,
            cpus: u64::try_from(cpus).ok().filter(|&c| c > 0)?,
            own: utime + stime,
        })
    }

    /// Cores' worth of CPU time other processes used since `before`.
    fn others_since(&self, before: &CpuTicks) -> f64 {
        let wall = self.total.saturating_sub(before.total) as f64 / self.cpus as f64;
        let others = self
            .busy
            .saturating_sub(before.busy)
            .saturating_sub(self.own.saturating_sub(before.own));
        if wall > 0.0 { others as f64 / wall } else { 0.0 }
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    const STAT: &str = "cpu  1000 0 200 3000 100 0 10 5 0 0\ncpu0 500 0 100 1500 50 0 5 2 0 0\n\
                        cpu1 500 0 100 1500 50 0 5 3 0 0\nintr 1 2 3\n";

    #[test]
    fn ticks_parse_from_proc() {
        let own = "42 (bertlite tool) R 1 1 1 0 -1 0 0 0 0 0 70 30 0 0 20 0";
        let t = CpuTicks::parse(STAT, own).expect("parses");
        assert_eq!(t, CpuTicks { busy: 1215, total: 4315, cpus: 2, own: 100 });
        assert_eq!(CpuTicks::parse("intr 1 2", own), None);
        assert_eq!(CpuTicks::parse(STAT, "42 (x) R 1"), None);
    }

    /// Two CPUs for 100 ticks of wall time (200 in all): this process used 100, others 60.
    #[test]
    fn others_use_is_what_this_process_did_not_use() {
        let before = CpuTicks { busy: 1000, total: 4000, cpus: 2, own: 50 };
        let after = CpuTicks { busy: 1160, total: 4200, cpus: 2, own: 150 };
        assert!((after.others_since(&before) - 0.6).abs() < 1e-12);
        // Nothing else ran: zero, not below.
        let quiet = CpuTicks { busy: 1100, total: 4200, cpus: 2, own: 150 };
        assert_eq!(quiet.others_since(&before), 0.0);
    }
}
