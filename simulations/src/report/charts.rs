//! CSV tables and SVG charts of a report.

use std::path::Path;
use std::time::Duration;

use super::Results;
use super::plan::{DEFAULT_INTERVAL, SERF_INTERVAL};
use super::summary::{self, Fit};
use crate::net::MAX_MESSAGE_BYTES;
use crate::output::csv::Table;
use crate::output::svg::{Chart, Rule, Series, Style};
use crate::stats::secs;

/// Writes every CSV and SVG file into `dir`.
pub fn write_all(r: &Results, dir: &Path) -> anyhow::Result<()> {
    scale_table(r).write(dir, "scale.csv")?;
    trials_table(r).write(dir, "propagation_trials.csv")?;
    kills_table(r).write(dir, "detection_kills.csv")?;
    loss_table(r).write(dir, "false_deaths.csv")?;
    partition_table(r).write(dir, "partition.csv")?;
    churn_table(r).write(dir, "churn.csv")?;
    digest_table(r).write(dir, "digest.csv")?;
    wall_table(r).write(dir, "digest_wall.csv")?;
    join_chart(r).write(dir, "join.svg")?;
    propagation_chart(r).write(dir, "propagation.svg")?;
    detection_chart(r).write(dir, "detection.svg")?;
    bandwidth_chart(r).write(dir, "bandwidth.svg")?;
    digest_chart(r).write(dir, "digest.svg")?;
    wall_chart(r).write(dir, "digest_wall.svg")?;
    churn_chart(r).write(dir, "churn.svg")?;
    Ok(())
}

fn ms(d: Duration) -> u64 {
    d.as_millis() as u64
}

fn scale_table(r: &Results) -> Table {
    let mut t = Table::new(&[
        "nodes",
        "interval_ms",
        "seed",
        "join_t50_s",
        "join_t99_s",
        "join_t100_s",
        "join_reached",
        "prop_trials",
        "prop_t50_med_s",
        "prop_t99_med_s",
        "prop_t99_max_s",
        "prop_t100_med_s",
        "prop_t100_max_s",
        "prop_incomplete",
        "detect_observations",
        "detect_p50_s",
        "detect_p99_s",
        "detect_max_s",
        "detect_missed",
        "sent_Bps_mean",
        "sent_Bps_p99",
        "sent_Bps_max",
        "recv_Bps_mean",
        "msgs_per_s",
        "syn_bytes_mean",
        "wire_Bps_mean_est",
        "cpu_ms_per_node_s",
        "virtual_s",
        "wall_s",
    ]);
    for s in &r.scale {
        let p = summary::propagation(s);
        let d = summary::detection(s);
        let b = &s.bandwidth;
        t.row(&[
            &s.nodes,
            &ms(s.interval),
            &s.seed,
            &secs(s.join.t50),
            &secs(s.join.t99),
            &secs(s.join.t100),
            &s.join.reached,
            &p.trials,
            &secs(p.t50_med),
            &secs(p.t99_med),
            &secs(p.t99_max),
            &secs(p.t100_med),
            &secs(p.t100_max),
            &p.incomplete,
            &d.population,
            &secs(d.t50),
            &secs(d.t99),
            &secs(d.t100),
            &(d.population - d.reached),
            &b.sent_mean,
            &b.sent_p99,
            &b.sent_max,
            &b.received_mean,
            &b.msgs_mean,
            &b.syn_mean,
            &b.wire_mean,
            &b.cpu_ms_per_node_s,
            &s.virtual_s,
            &s.wall_s,
        ]);
    }
    t
}

fn trials_table(r: &Results) -> Table {
    let mut t = Table::new(&[
        "nodes",
        "interval_ms",
        "trial",
        "population",
        "reached",
        "t50_s",
        "t99_s",
        "t100_s",
    ]);
    for s in &r.scale {
        for (i, p) in s.propagation.iter().enumerate() {
            t.row(&[
                &s.nodes,
                &ms(s.interval),
                &i,
                &p.population,
                &p.reached,
                &secs(p.t50),
                &secs(p.t99),
                &secs(p.t100),
            ]);
        }
    }
    t
}

fn kills_table(r: &Results) -> Table {
    let mut t = Table::new(&[
        "nodes",
        "interval_ms",
        "kill",
        "observers",
        "detected",
        "p50_s",
        "p99_s",
        "max_s",
    ]);
    for s in &r.scale {
        for (i, d) in s.detection.iter().enumerate() {
            let reach = crate::scenarios::Reach::from_delays(&d.delays, d.observers);
            t.row(&[
                &s.nodes,
                &ms(s.interval),
                &i,
                &d.observers,
                &d.delays.len(),
                &secs(reach.t50),
                &secs(reach.t99),
                &secs(reach.t100),
            ]);
        }
    }
    t
}

fn loss_table(r: &Results) -> Table {
    let mut t = Table::new(&[
        "nodes",
        "interval_ms",
        "loss",
        "seed",
        "window_s",
        "converged",
        "false_deaths",
        "pairs",
        "subjects",
        "observers",
        "min_live",
        "sent_Bps_mean",
    ]);
    for l in &r.loss {
        t.row(&[
            &l.nodes,
            &ms(l.interval),
            &l.loss,
            &l.seed,
            &l.window_s,
            &l.converged,
            &l.false_deaths,
            &l.pairs,
            &l.subjects,
            &l.observers,
            &l.min_live,
            &l.bandwidth.sent_mean,
        ]);
    }
    t
}

fn partition_table(r: &Results) -> Table {
    let mut t = Table::new(&[
        "nodes",
        "interval_ms",
        "seed",
        "hold_s",
        "split_seen",
        "members_t50_s",
        "members_t99_s",
        "members_t100_s",
        "members_reached",
        "keys_t50_s",
        "keys_t99_s",
        "keys_t100_s",
        "keys_reached",
    ]);
    for p in &r.partition {
        t.row(&[
            &p.nodes,
            &ms(p.interval),
            &p.seed,
            &p.hold_s,
            &p.split_seen,
            &secs(p.members.t50),
            &secs(p.members.t99),
            &secs(p.members.t100),
            &p.members.reached,
            &secs(p.keys.t50),
            &secs(p.keys.t99),
            &secs(p.keys.t100),
            &p.keys.reached,
        ]);
    }
    t
}

fn churn_table(r: &Results) -> Table {
    let mut t = Table::new(&[
        "t_s",
        "up",
        "restarts",
        "live_mean",
        "dead_mean",
        "dead_max",
        "states_mean",
        "states_max",
        "keys_mean",
        "view_members_mean",
        "view_alive_mean",
        "syn_bytes_mean",
        "sent_Bps_mean",
    ]);
    for s in r.churn.iter().flat_map(|c| &c.samples) {
        t.row(&[
            &s.t_s,
            &s.up,
            &s.restarts,
            &s.live_mean,
            &s.dead_mean,
            &s.dead_max,
            &s.states_mean,
            &s.states_max,
            &s.keys_mean,
            &s.view_members_mean,
            &s.view_alive_mean,
            &s.syn_mean,
            &s.sent_mean,
        ]);
    }
    t
}

fn digest_table(r: &Results) -> Table {
    let mut t = Table::new(&[
        "source",
        "entries",
        "syn_bytes",
        "v0_syn_bytes_name10",
        "v0_syn_bytes_name25",
    ]);
    let mut row = |source: &str, (e, b): (f64, f64)| {
        let n = e as usize;
        t.row(&[
            &source,
            &n,
            &b,
            &summary::v0_syn_bytes(n, 10),
            &summary::v0_syn_bytes(n, 25),
        ]);
    };
    for p in summary::real_digest_points(r) {
        row("real cluster (node-00042)", p);
    }
    for d in &r.digest {
        row(
            &format!("planted ({})", d.naming),
            (d.entries as f64, d.syn_bytes),
        );
    }
    t
}

fn wall_table(r: &Results) -> Table {
    let mut t = Table::new(&[
        "t_s",
        "phantoms",
        "syn_bytes",
        "refused",
        "delivered",
        "gossiping",
        "live_mean",
        "panics",
    ]);
    for s in r.wall.iter().flat_map(|w| &w.samples) {
        t.row(&[
            &s.t_s,
            &s.phantoms,
            &s.syn_bytes,
            &s.refused,
            &s.delivered,
            &s.gossiping,
            &s.live_mean,
            &s.panics,
        ]);
    }
    t
}

fn series(name: &str, style: Style, points: Vec<(f64, f64)>) -> Series {
    Series {
        name: name.to_owned(),
        points,
        style,
    }
}

fn hline(label: &str, at: f64) -> Rule {
    Rule {
        label: label.to_owned(),
        at,
        vertical: false,
    }
}

fn join_chart(r: &Results) -> Chart {
    let mut c = Chart {
        title: "Join convergence: every view lists every node alive".into(),
        x_label: "nodes (log)".into(),
        y_label: "seconds after the last node started".into(),
        x_log: true,
        y_zero: true,
        ..Chart::default()
    };
    for (interval, style) in [
        (SERF_INTERVAL, Style::Line),
        (DEFAULT_INTERVAL, Style::Dashed),
    ] {
        let runs = summary::at_interval(r, interval);
        for (q, f) in [("50 %", 0), ("100 %", 2)] {
            let pts = runs
                .iter()
                .map(|s| {
                    (
                        s.nodes as f64,
                        secs([s.join.t50, s.join.t99, s.join.t100][f]),
                    )
                })
                .collect();
            c.series.push(series(
                &format!("{q} of nodes, {} ms", ms(interval)),
                style,
                pts,
            ));
        }
    }
    c
}

fn propagation_chart(r: &Results) -> Chart {
    let mut c = Chart {
        title: "Propagation of one new key (median of trials)".into(),
        x_label: "nodes (log)".into(),
        y_label: "seconds after the write".into(),
        x_log: true,
        y_zero: true,
        ..Chart::default()
    };
    let runs = summary::at_interval(r, SERF_INTERVAL);
    let pick = |f: fn(&summary::Propagation) -> Option<Duration>| {
        runs.iter()
            .map(|s| (s.nodes as f64, secs(f(&summary::propagation(s)))))
            .collect::<Vec<_>>()
    };
    c.series.push(series(
        "50 % of nodes, 200 ms",
        Style::Line,
        pick(|p| p.t50_med),
    ));
    c.series.push(series(
        "99 % of nodes, 200 ms",
        Style::Line,
        pick(|p| p.t99_med),
    ));
    c.series.push(series(
        "100 % of nodes, 200 ms",
        Style::Line,
        pick(|p| p.t100_med),
    ));
    let slow = summary::at_interval(r, DEFAULT_INTERVAL);
    c.series.push(series(
        "99 % of nodes, 500 ms (our default)",
        Style::Dashed,
        slow.iter()
            .map(|s| (s.nodes as f64, secs(summary::propagation(s).t99_med)))
            .collect(),
    ));
    c.series.push(series(
        "Serf model, 99.99 %, 200 ms, fanout 3",
        Style::Points,
        vec![(30.0, 1.8), (1000.0, 2.2)],
    ));
    c.rules
        .push(hline("goal: 99 % within 2 s at 1 000 nodes", 2.0));
    c
}

fn detection_chart(r: &Results) -> Chart {
    let mut c = Chart {
        title: "Detection of a killed node (all observers)".into(),
        x_label: "nodes (log)".into(),
        y_label: "seconds after the kill".into(),
        x_log: true,
        y_zero: true,
        ..Chart::default()
    };
    for (interval, style) in [
        (DEFAULT_INTERVAL, Style::Line),
        (SERF_INTERVAL, Style::Dashed),
    ] {
        let runs = summary::at_interval(r, interval);
        for (q, f) in [("p50", 0), ("p99", 1), ("max", 2)] {
            let pts = runs
                .iter()
                .map(|s| {
                    let d = summary::detection(s);
                    (s.nodes as f64, secs([d.t50, d.t99, d.t100][f]))
                })
                .collect();
            c.series
                .push(series(&format!("{q}, {} ms", ms(interval)), style, pts));
        }
    }
    c.series.push(series(
        "chitchat bound: < 10 s at 100 nodes",
        Style::Points,
        vec![(100.0, 10.0)],
    ));
    c.rules
        .push(hline("goal: p99 within 5 s at 100 nodes", 5.0));
    c
}

fn bandwidth_chart(r: &Results) -> Chart {
    let mut c = Chart {
        title:
            "Gossip sent per node (chitchat payload, mean), and where one digest fills a message"
                .into(),
        x_label: "nodes (log)".into(),
        y_label: "bytes per second (log)".into(),
        x_log: true,
        y_log: true,
        ..Chart::default()
    };
    let limit = real_fit(r).map(|f| f.limit());
    for (interval, style) in [
        (SERF_INTERVAL, Style::Line),
        (DEFAULT_INTERVAL, Style::Dashed),
    ] {
        let runs = summary::at_interval(r, interval);
        let pts: Vec<(f64, f64)> = runs
            .iter()
            .map(|s| (s.nodes as f64, s.bandwidth.sent_mean))
            .collect();
        c.series.push(series(
            &format!("{} ms interval (measured)", ms(interval)),
            style,
            pts.clone(),
        ));
        // Linear in N (every message carries the whole digest): extend the last points.
        let tail: Vec<(f64, f64)> = pts.iter().rev().take(3).copied().collect();
        if let (Some(fit), Some(end), Some(last)) = (Fit::of(&tail), limit, pts.last()) {
            let ext = (0..=6)
                .map(|i| last.0 + (end - last.0) * i as f64 / 6.0)
                .map(|x| (x, fit.a + fit.b * x))
                .collect();
            c.series.push(series(
                &format!("{} ms, extrapolated", ms(interval)),
                Style::Dashed,
                ext,
            ));
        }
    }
    c.series.push(series(
        "chitchat bound: < 120 KB/s at 100 nodes",
        Style::Points,
        vec![(100.0, 120_000.0)],
    ));
    c.series.push(series(
        "goal: ≤ 20 KB/s at 100 nodes",
        Style::Points,
        vec![(100.0, 20_000.0)],
    ));
    if let Some(l) = limit {
        c.rules.push(Rule {
            label: format!("V1 digest fills one message (~{l:.0} nodes, measured)"),
            at: l,
            vertical: true,
        });
    }
    c.rules.push(Rule {
        label: format!(
            "V0 digest fills one message ({} nodes, exact)",
            summary::v0_limit(10)
        ),
        at: summary::v0_limit(10) as f64,
        vertical: true,
    });
    c
}

fn digest_chart(r: &Results) -> Chart {
    let mut c = Chart {
        title: "Digest (Syn) size against nodes known".into(),
        x_label: "digest entries (live and not-yet-forgotten dead incarnations)".into(),
        y_label: "bytes in one message".into(),
        y_zero: true,
        ..Chart::default()
    };
    let real = summary::real_digest_points(r);
    let mut xs: Vec<f64> = r.digest.iter().map(|d| d.entries as f64).collect();
    xs.extend(real.iter().map(|p| p.0));
    let top = xs.iter().copied().fold(1000.0_f64, f64::max);
    c.series
        .push(series("real clusters, V1 (measured)", Style::Points, real));
    for naming in ["node-00042", "checkout-7d9f8b6c5d-x2k9p"] {
        let pts = summary::planted_points(r, naming);
        if !pts.is_empty() {
            c.series.push(series(
                &format!("planted {naming}, V1 (measured)"),
                Style::Line,
                pts,
            ));
        }
    }
    for len in [10, 25] {
        let pts = (0..=8)
            .map(|i| top * i as f64 / 8.0)
            .map(|x| (x, summary::v0_syn_bytes(x as usize, len)))
            .collect();
        c.series.push(series(
            &format!("V0, {len}-char names (exact)"),
            Style::Dashed,
            pts,
        ));
    }
    c.rules
        .push(hline("one message: 65 507 bytes", MAX_MESSAGE_BYTES as f64));
    c
}

fn wall_chart(r: &Results) -> Chart {
    let mut c = Chart {
        title: format!(
            "Growing the digest to one message ({} real nodes)",
            r.wall.as_ref().map_or(0, |w| w.real)
        ),
        x_label: "seconds since planting began".into(),
        y_label: "see legend".into(),
        y_zero: true,
        ..Chart::default()
    };
    let Some(w) = &r.wall else { return c };
    let pts = |f: fn(&crate::scenarios::wall::WallSample) -> f64| {
        w.samples.iter().map(|s| (s.t_s, f(s))).collect::<Vec<_>>()
    };
    c.series.push(series(
        "Syn size, KB",
        Style::Line,
        pts(|s| s.syn_bytes / 1000.0),
    ));
    c.series.push(series(
        "nodes still gossiping",
        Style::Line,
        pts(|s| s.gossiping as f64),
    ));
    c.series.push(series(
        "live peers seen by them (mean)",
        Style::Dashed,
        pts(|s| s.live_mean),
    ));
    c.series.push(series(
        "messages refused / s",
        Style::Dashed,
        pts(|s| s.refused as f64 / 2.0),
    ));
    c.rules
        .push(hline("65.5 KB limit", MAX_MESSAGE_BYTES as f64 / 1000.0));
    for (what, at) in [
        ("first panic", w.panic_at),
        ("first refused message", w.refused_at),
    ] {
        if let Some((t, _, _)) = at {
            c.rules.push(Rule {
                label: format!("{what} at {t:.0} s"),
                at: t,
                vertical: true,
            });
        }
    }
    c
}

/// One plotted quantity of a churn sample.
type ChurnMetric = fn(&crate::scenarios::churn::ChurnSample) -> f64;

fn churn_chart(r: &Results) -> Chart {
    let mut c = Chart {
        title: "Long churn: one crash and one restart every 10 s".into(),
        x_label: "seconds".into(),
        y_label: "per node (mean, unless noted)".into(),
        y_zero: true,
        ..Chart::default()
    };
    let Some(ch) = &r.churn else { return c };
    let pts = |f: fn(&crate::scenarios::churn::ChurnSample) -> f64| {
        ch.samples.iter().map(|s| (s.t_s, f(s))).collect::<Vec<_>>()
    };
    let lines: [(&str, Style, ChurnMetric); 7] = [
        ("node states held", Style::Line, |s| s.states_mean),
        ("live members", Style::Line, |s| s.live_mean),
        ("dead incarnations", Style::Line, |s| s.dead_mean),
        ("dead incarnations, most on one node", Style::Dashed, |s| {
            s.dead_max as f64
        }),
        ("restarts so far", Style::Dashed, |s| s.restarts as f64),
        ("view members (by name)", Style::Dashed, |s| {
            s.view_members_mean
        }),
        ("Syn size / 100 bytes", Style::Dashed, |s| {
            s.syn_mean / 100.0
        }),
    ];
    for (name, style, f) in lines {
        c.series.push(series(name, style, pts(f)));
    }
    c.rules.push(Rule {
        label: "grace period".into(),
        at: ch.grace_s,
        vertical: true,
    });
    c
}

/// The fit of the real-cluster digest sizes, if measured.
pub fn real_fit(r: &Results) -> Option<Fit> {
    Fit::of(&summary::real_digest_points(r))
}
