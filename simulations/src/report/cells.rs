//! The cells report: CSV tables, the flat-against-celled chart and `cells.md`.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Context;

use super::summary::{Fit, fmt_kbs, fmt_s};
use crate::output::csv::Table;
use crate::output::svg::{Chart, Rule, Series, Style};
use crate::scenarios::Reach;
use crate::scenarios::cells::CellsResult;
use crate::stats::secs;

/// Guard cap on incarnations one node holds (`murmur_membership::trust::guard`).
pub const GUARD_CAP: usize = murmur_membership::trust::guard::MAX_INCARNATIONS;
/// Digest entries that fill one message (measured, protocol V1, 10-character names).
pub const DIGEST_LIMIT: f64 = 6_100.0;
/// Targets of acceptance point 1.
pub const ORDINARY_TARGET: f64 = 20_000.0;
/// Per custodian.
pub const CUSTODIAN_TARGET: f64 = 100_000.0;

/// What the cells report shows.
#[derive(Clone, Debug, Default)]
pub struct CellsReport {
    /// Runs, any order.
    pub runs: Vec<CellsResult>,
    /// Flat meshes at the default interval, chitchat's own encoding: (nodes, bytes sent per
    /// node per second).
    pub flat: Vec<(usize, f64)>,
    /// The same, gossip packed as nodes pack it between each other.
    pub flat_packed: Vec<(usize, f64)>,
    /// Detection in one flat mesh the size of a cell, same settings, run by the same command:
    /// what "as today" means for the cell's detection.
    pub flat_detection: Option<(usize, Reach)>,
    /// The command that made it.
    pub command: String,
}

/// Flat points at `interval_ms` from a `scale.csv` of the main report.
pub fn read_flat(path: &Path, interval_ms: u64) -> anyhow::Result<Vec<(usize, f64)>> {
    let rows = read_columns(path, &["nodes", "interval_ms", "sent_Bps_mean"])?;
    let mut out: Vec<(usize, f64)> = rows
        .into_iter()
        .filter(|r| r[1] as u64 == interval_ms)
        .map(|r| (r[0] as usize, r[2]))
        .collect();
    out.sort_by_key(|p| p.0);
    Ok(out)
}

/// The numbers in columns `names` of the CSV table at `path`, row by row (rows where one does
/// not parse are left out).
fn read_columns<const N: usize>(path: &Path, names: &[&str; N]) -> anyhow::Result<Vec<[f64; N]>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap_or_default().split(',').collect();
    let mut cols = [0; N];
    for (col, name) in cols.iter_mut().zip(names) {
        *col = header
            .iter()
            .position(|h| h == name)
            .with_context(|| format!("{} has no column {name}", path.display()))?;
    }
    let rows = lines.filter_map(|line| {
        let f: Vec<&str> = line.split(',').collect();
        let mut row = [0.0; N];
        for (v, col) in row.iter_mut().zip(cols) {
            *v = f.get(col)?.parse().ok()?;
        }
        Some(row)
    });
    Ok(rows.collect())
}

/// Draws `cells_bandwidth.svg` in `dir` again, from the runs in its `cells.csv` and the flat
/// curves given: for a flat curve measured again after the cells runs. Returns the chart's path.
pub fn redraw(
    dir: &Path,
    flat: &[(usize, f64)],
    flat_packed: &[(usize, f64)],
) -> anyhow::Result<PathBuf> {
    let names = [
        "total_nodes",
        "ordinary_sent_Bps_mean",
        "custodian_sent_Bps_mean",
    ];
    let mut runs = read_columns(&dir.join("cells.csv"), &names)?;
    runs.sort_by(|a, b| a[0].total_cmp(&b[0]));
    let curves = Curves {
        flat: points(flat),
        flat_packed: points(flat_packed),
        ordinary: runs.iter().map(|r| (r[0], r[1])).collect(),
        custodian: runs.iter().map(|r| (r[0], r[2])).collect(),
    };
    chart(&curves).write(dir, "cells_bandwidth.svg")?;
    Ok(dir.join("cells_bandwidth.svg"))
}

/// Writes the tables, the chart and `cells.md` into `dir`; returns the markdown's path.
pub fn write(r: &CellsReport, dir: &Path) -> anyhow::Result<PathBuf> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    runs_table(r).write(dir, "cells.csv")?;
    spread_table(r).write(dir, "cells_spread.csv")?;
    chart(&Curves::of(r)).write(dir, "cells_bandwidth.svg")?;
    let path = dir.join("cells.md");
    std::fs::write(&path, markdown(r)).with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}

fn runs_table(r: &CellsReport) -> Table {
    let mut t = Table::new(&[
        "cells",
        "cell_size",
        "total_nodes",
        "k",
        "seed",
        "ordinary_sent_Bps_mean",
        "ordinary_sent_Bps_p99",
        "ordinary_sent_Bps_max",
        "ordinary_wire_Bps_mean_est",
        "seeds_measured",
        "seeds_sent_Bps_mean",
        "seeds_sent_Bps_max",
        "others_sent_Bps_mean",
        "others_sent_Bps_p99",
        "others_sent_Bps_max",
        "custodian_cell_sent_Bps_mean",
        "top_sent_Bps_mean",
        "top_sent_Bps_max",
        "custodian_sent_Bps_mean",
        "cpu_ms_per_process_s",
        "cell_join_t100_s",
        "top_join_t100_s",
        "bridged_t100_s",
        "top_joiners",
        "most_acting",
        "virtual_s",
        "wall_s",
    ]);
    for x in &r.runs {
        t.row(&[
            &x.cells,
            &x.cell_size,
            &(x.cells * x.cell_size),
            &x.k,
            &x.seed,
            &x.ordinary.sent_mean,
            &x.ordinary.sent_p99,
            &x.ordinary.sent_max,
            &x.ordinary.wire_mean,
            &x.seeds.nodes,
            &x.seeds.sent_mean,
            &x.seeds.sent_max,
            &x.others.sent_mean,
            &x.others.sent_p99,
            &x.others.sent_max,
            &x.custodian_cell.sent_mean,
            &x.custodian_top.sent_mean,
            &x.custodian_top.sent_max,
            &x.custodian_sent(),
            &x.ordinary.cpu_ms_per_node_s,
            &secs(x.cell_join.t100),
            &secs(x.top_join.t100),
            &secs(x.bridged.t100),
            &x.top_joiners,
            &x.most_acting,
            &x.virtual_s,
            &x.wall_s,
        ]);
    }
    t
}

fn spread_table(r: &CellsReport) -> Table {
    let mut t = Table::new(&[
        "cells",
        "kind",
        "top_t50_s",
        "top_t99_s",
        "top_t100_s",
        "top_reached",
        "cell_t50_s",
        "cell_t99_s",
        "cell_t100_s",
        "cell_reached",
        "all_t99_s_modelled",
        "all_t100_s_modelled",
    ]);
    for x in &r.runs {
        for s in &x.spreads {
            t.row(&[
                &x.cells,
                &s.kind,
                &secs(s.top.t50),
                &secs(s.top.t99),
                &secs(s.top.t100),
                &s.top.reached,
                &secs(s.cell.t50),
                &secs(s.cell.t99),
                &secs(s.cell.t100),
                &s.cell.reached,
                &secs(s.all.t99),
                &secs(s.all.t100),
            ]);
        }
    }
    t
}

fn line(name: &str, style: Style, points: Vec<(f64, f64)>) -> Series {
    Series {
        name: name.to_owned(),
        points,
        style,
    }
}

fn by_size(r: &CellsReport) -> Vec<&CellsResult> {
    let mut v: Vec<&CellsResult> = r.runs.iter().collect();
    v.sort_by_key(|x| x.cells * x.cell_size);
    v
}

/// What the chart draws: (nodes, bytes sent per second) for each curve.
struct Curves {
    flat: Vec<(f64, f64)>,
    flat_packed: Vec<(f64, f64)>,
    /// Celled meshes: an ordinary node, and a custodian (cell and top layer).
    ordinary: Vec<(f64, f64)>,
    custodian: Vec<(f64, f64)>,
}

impl Curves {
    fn of(r: &CellsReport) -> Self {
        let runs = by_size(r);
        let pts = |f: fn(&CellsResult) -> f64| {
            runs.iter()
                .map(|x| ((x.cells * x.cell_size) as f64, f(x)))
                .collect()
        };
        Self {
            flat: points(&r.flat),
            flat_packed: points(&r.flat_packed),
            ordinary: pts(|x| x.ordinary.sent_mean),
            custodian: pts(CellsResult::custodian_sent),
        }
    }
}

fn points(flat: &[(usize, f64)]) -> Vec<(f64, f64)> {
    flat.iter().map(|(n, b)| (*n as f64, *b)).collect()
}

fn chart(r: &Curves) -> Chart {
    let mut c = Chart {
        title: "Gossip sent per node at 500 ms: one flat cluster against cells of 200".into(),
        x_label: "nodes in the mesh (log)".into(),
        y_label: "bytes per second (log)".into(),
        x_log: true,
        y_log: true,
        ..Chart::default()
    };
    let flat = &r.flat;
    c.series.push(line(
        "flat, chitchat's encoding (measured)",
        Style::Line,
        flat.clone(),
    ));
    if !r.flat_packed.is_empty() {
        c.series.push(line(
            "flat, packed (measured)",
            Style::Line,
            r.flat_packed.clone(),
        ));
    }
    let tail: Vec<(f64, f64)> = flat.iter().rev().take(3).copied().collect();
    if let (Some(fit), Some(last)) = (Fit::of(&tail), flat.last()) {
        let ext = [last.0, 2_000.0, 5_000.0, DIGEST_LIMIT]
            .iter()
            .map(|x| (*x, fit.a + fit.b * x))
            .collect();
        c.series
            .push(line("flat, extrapolated (cannot run)", Style::Dashed, ext));
    }
    if !r.ordinary.is_empty() {
        c.series.push(line(
            "celled, ordinary node (measured)",
            Style::Line,
            r.ordinary.clone(),
        ));
        c.series.push(line(
            "celled, custodian: cell + top layer (measured)",
            Style::Dashed,
            r.custodian.clone(),
        ));
    }
    c.rules.push(Rule {
        label: "target: ordinary node ≤ 20 KB/s".into(),
        at: ORDINARY_TARGET,
        vertical: false,
    });
    c.rules.push(Rule {
        label: "target: custodian ≤ 100 KB/s".into(),
        at: CUSTODIAN_TARGET,
        vertical: false,
    });
    c.rules.push(Rule {
        label: format!("flat: the gossip guard holds at most {GUARD_CAP} incarnations"),
        at: GUARD_CAP as f64,
        vertical: true,
    });
    c.rules.push(Rule {
        label: "flat: the digest fills one message (~6 100 nodes)".into(),
        at: DIGEST_LIMIT,
        vertical: true,
    });
    c
}

fn reach(x: &Reach) -> String {
    format!("{} / {} / {}", fmt_s(x.t50), fmt_s(x.t99), fmt_s(x.t100))
}

fn markdown(r: &CellsReport) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "# Cells: simulated meshes of cells\n");
    let _ = writeln!(s, "Made with `{}`.\n", r.command);
    let _ = writeln!(
        s,
        "| cells × size | nodes | ordinary node sent (mean / p99 / max) | of which seeds (mean / max) | and the others (mean / p99 / max) | custodian: cell + top | CPU per process | joins: cell / top / bridged (100 %) | nodes ever in the top layer | most acting at once |\n|---|---|---|---|---|---|---|---|---|---|"
    );
    for x in &r.runs {
        let _ = writeln!(
            s,
            "| {} × {} | {} | {} / {} / {} KB/s | {} / {} KB/s ({}) | {} / {} / {} KB/s | {} + {} = {} KB/s | {:.1} ms/s | {} / {} / {} s | {} | {} |",
            x.cells,
            x.cell_size,
            x.cells * x.cell_size,
            fmt_kbs(x.ordinary.sent_mean),
            fmt_kbs(x.ordinary.sent_p99),
            fmt_kbs(x.ordinary.sent_max),
            fmt_kbs(x.seeds.sent_mean),
            fmt_kbs(x.seeds.sent_max),
            x.seeds.nodes,
            fmt_kbs(x.others.sent_mean),
            fmt_kbs(x.others.sent_p99),
            fmt_kbs(x.others.sent_max),
            fmt_kbs(x.custodian_cell.sent_mean),
            fmt_kbs(x.custodian_top.sent_mean),
            fmt_kbs(x.custodian_sent()),
            x.ordinary.cpu_ms_per_node_s,
            fmt_s(x.cell_join.t100),
            fmt_s(x.top_join.t100),
            fmt_s(x.bridged.t100),
            x.top_joiners,
            x.most_acting,
        );
    }
    let _ = writeln!(
        s,
        "\n## Propagation (seconds to 50 % / 99 % / 100 %)\n\n| cells | change | top layer (every cell's acting custodian) | full cell | all nodes, 99 % / 100 % (modelled) |\n|---|---|---|---|---|"
    );
    for x in &r.runs {
        for sp in &x.spreads {
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} | {} / {} |",
                x.cells,
                sp.kind,
                reach(&sp.top),
                reach(&sp.cell),
                fmt_s(sp.all.t99),
                fmt_s(sp.all.t100)
            );
        }
    }
    for x in &r.runs {
        faults(&mut s, x, r.flat_detection.as_ref());
    }
    let _ = writeln!(s, "\n![flat against celled](cells_bandwidth.svg)");
    s
}

fn faults(s: &mut String, x: &CellsResult, flat: Option<&(usize, Reach)>) {
    if let Some(d) = &x.detection {
        let _ = write!(
            s,
            "\n## {} cells: failures\n\n- Detection of a crash inside the cell, over {} observers: p50 {} s, p99 {} s, max {} s ({} noticed).",
            x.cells,
            d.population,
            fmt_s(d.t50),
            fmt_s(d.t99),
            fmt_s(d.t100),
            d.reached
        );
        if let Some((n, f)) = flat {
            let _ = write!(
                s,
                " A flat mesh of {n} nodes with the same settings, run by the same command: p50 {} s, p99 {} s, max {} s over {} observations.",
                fmt_s(f.t50),
                fmt_s(f.t99),
                fmt_s(f.t100),
                f.population
            );
        }
        let _ = writeln!(s);
    }
    if let Some(h) = &x.handover {
        let _ = writeln!(
            s,
            "- Publishing custodian killed: its peer took over after {} s; the other cells' custodians held a head from it after {} (50 / 99 / 100 %, s); the next-ranked node started its top-layer instance after {} s; every node of the cell listed every other cell fresh after {} s (at most {:.0} % of node–cell pairs marked stale meanwhile). Ordinary nodes sent {} KB/s on average in the 15 s after the kill.",
            x.handover
                .as_ref()
                .and_then(|h| h.takeover_s)
                .map_or("–".into(), |v| format!("{v:.2}")),
            reach(&h.published),
            h.new_custodian_s.map_or("–".into(), |v| format!("{v:.2}")),
            fmt_s(h.refed.t100),
            h.stale_peak * 100.0,
            fmt_kbs(h.burst.sent_mean),
        );
    }
    if let Some(p) = &x.partition {
        let _ = writeln!(
            s,
            "- Cell cut from the rest for {:.0} s: every node marked every other cell stale after {} s; {} of {} nodes still held every other cell's summary at the end (kept, marked stale); fewest live members listed during the cut: {}; a key written inside reached the cell in {} s (50 / 99 / 100 %). After the heal: every other cell fresh at every node in {} s; top layer whole again in {} s.",
            p.hold_s,
            p.all_stale_s.map_or("–".into(), |v| format!("{v:.0}")),
            p.kept_remote,
            x.cell_size,
            p.min_alive,
            reach(&p.inside),
            reach(&p.fresh_again),
            reach(&p.top_again),
        );
    }
}
