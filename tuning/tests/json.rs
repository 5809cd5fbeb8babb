//! `--json` output read back with the crate's own parser.

mod common;

use common::Fixture;
use coreshard_tune::json::{parse, Value};
use coreshard_tune::plan::{self, Applied, PlanOptions};
use coreshard_tune::{audit_with, report, Context, Severity};

#[test]
fn audit_json_round_trips() {
    let f = Fixture::healthy(8, true);
    // Something with quotes, backslashes and a newline in it.
    f.write("/proc/sys/kernel/osrelease", "6.8.0-\"odd\"\\name\n");
    f.write("/proc/sys/kernel/io_uring_disabled", "2\n");
    let opts = f.good_options();
    let ctx = Context::new(&f.root(), &opts);
    let findings = audit_with(&f.root(), &opts, &ctx);
    let text = report::audit_json(&ctx, "/fixture", &findings).to_pretty();
    let v = parse(&text).expect("valid JSON");
    assert_eq!(v.get("root").and_then(Value::as_str), Some("/fixture"));
    assert_eq!(
        v.get("kernel").and_then(Value::as_str),
        Some("6.8.0-\"odd\"\\name")
    );
    assert_eq!(v.get("shards").and_then(Value::as_f64), Some(3.0));
    assert_eq!(v.get("worst").and_then(Value::as_str), Some("bad"));
    let cpus: Vec<f64> = v
        .get("shard_cpus")
        .and_then(Value::as_array)
        .unwrap()
        .iter()
        .filter_map(Value::as_f64)
        .collect();
    assert_eq!(cpus, vec![1.0, 2.0, 3.0]);
    let back: Vec<_> = v
        .get("findings")
        .and_then(Value::as_array)
        .unwrap()
        .iter()
        .map(|x| report::finding_from_json(x).expect("a finding"))
        .collect();
    assert_eq!(back, findings);
    assert_eq!(back[0].severity, Severity::Bad);
    assert!(back.iter().any(|x| x.fix.is_none()));
}

#[test]
fn plan_json_round_trips() {
    let f = Fixture::healthy(16, true);
    let p = plan::plan(
        &f.root(),
        &PlanOptions {
            shards: 4,
            ..PlanOptions::default()
        },
    )
    .unwrap();
    let applied = Applied::WouldWrite(vec!["/etc/a".into(), "/etc/b".into()]);
    let v = parse(&report::plan_json(&p, Some(&applied)).to_pretty()).expect("valid JSON");
    let layout = v.get("layout").unwrap();
    let nums = |k: &str| -> Vec<usize> {
        layout
            .get(k)
            .and_then(Value::as_array)
            .unwrap()
            .iter()
            .filter_map(Value::as_f64)
            .map(|n| n as usize)
            .collect()
    };
    assert_eq!(nums("shard_cpus"), p.layout.shard_cpus);
    assert_eq!(nums("irq_cpus"), p.layout.irq_cpus);
    assert_eq!(nums("idle_cpus"), p.layout.idle_cpus);
    assert_eq!(
        layout.get("wal_cpu").and_then(Value::as_f64),
        Some(p.layout.wal_cpu as f64)
    );
    assert_eq!(
        v.get("command").and_then(Value::as_str),
        Some(p.command.as_str())
    );
    let unit = v.get("unit").unwrap();
    assert_eq!(
        unit.get("content").and_then(Value::as_str),
        Some(p.unit.content.as_str())
    );
    assert_eq!(
        v.get("sysctl")
            .and_then(|s| s.get("path"))
            .and_then(Value::as_str),
        Some("/etc/sysctl.d/60-coreshard.conf")
    );
    let apply = v.get("apply").unwrap();
    assert_eq!(apply.get("dry_run"), Some(&Value::Bool(true)));
    assert_eq!(
        apply
            .get("files")
            .and_then(Value::as_array)
            .map(|a| a.len()),
        Some(2)
    );
    // Without --apply, "apply" is null.
    let v = parse(&report::plan_json(&p, None).to_pretty()).unwrap();
    assert_eq!(v.get("apply"), Some(&Value::Null));
}
