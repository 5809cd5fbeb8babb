//! The real binary on a fixture root.

mod common;

use std::process::Command;

use common::{Fixture, TempDir};
use coreshard_tune::json::{parse, Value};

fn tune(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_coreshard-tune"))
        .args(args)
        .output()
        .expect("run coreshard-tune");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn audit_text_and_json() {
    let f = Fixture::healthy(8, true);
    f.write(
        "/sys/kernel/mm/transparent_hugepage/enabled",
        "[always] madvise never\n",
    );
    let root = f.dir.path().to_str().unwrap().to_string();
    let base = [
        "audit",
        "--root",
        &root,
        "--shards",
        "3",
        "--cores",
        "1-3",
        "--dir",
        "/var/lib/coreshard",
    ];
    let (code, out, err) = tune(&base);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("3 shard(s) on CPUs 1-3, kernel 6.8.0-45-generic"),
        "{out}"
    );
    assert!(out.starts_with("coreshard-tune audit of"));
    let first = out.lines().find(|l| l.starts_with('[')).unwrap();
    assert_eq!(first, "[WARN] memory.thp");
    assert!(out.contains("   fix:    echo madvise > /sys/kernel/mm/transparent_hugepage/enabled"));
    assert!(out.contains("summary: 0 bad, 1 warn, 1 info,"), "{out}");

    let mut args = base.to_vec();
    args.push("--json");
    let (code, out, err) = tune(&args);
    assert_eq!(code, 0, "{err}");
    let v = parse(&out).expect("JSON");
    assert_eq!(v.get("worst").and_then(Value::as_str), Some("warn"));
    let findings = v.get("findings").and_then(Value::as_array).unwrap();
    assert_eq!(
        findings[0].get("id").and_then(Value::as_str),
        Some("memory.thp")
    );
    assert_eq!(
        findings[0].get("severity").and_then(Value::as_str),
        Some("warn")
    );
}

#[test]
fn plan_text_json_and_apply() {
    let f = Fixture::healthy(16, true);
    let root = f.dir.path().to_str().unwrap().to_string();
    let (code, out, err) = tune(&["plan", "--shards", "4", "--root", &root]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("  shards        1-4\n"), "{out}");
    assert!(out.contains("  wal           5\n"), "{out}");
    assert!(
        out.contains("--shards 4 --cores 1,2,3,4 --wal-core 5"),
        "{out}"
    );
    assert!(out.contains("--- /etc/sysctl.d/60-coreshard.conf ---"));
    assert!(out.contains("CPUAffinity=1 2 3 4 5"));
    assert!(!out.contains("would write"));

    let (code, out, _) = tune(&["plan", "--shards", "4", "--root", &root, "--json"]);
    assert_eq!(code, 0);
    let v = parse(&out).expect("JSON");
    assert!(v
        .get("command")
        .and_then(Value::as_str)
        .unwrap()
        .contains("--wal-core 5"));

    // --apply alone is a dry run and writes nothing.
    let (code, out, _) = tune(&["plan", "--shards", "4", "--root", &root, "--apply"]);
    assert_eq!(code, 0);
    assert!(out.contains("dry run (add --yes to write):"));
    assert!(out.contains("would write /etc/systemd/system/coreshard.service"));
    let dir = TempDir::new("cli-out");
    let target = dir.path().join("deploy");
    let target_s = target.to_str().unwrap();
    let (code, _, _) = tune(&[
        "plan",
        "--shards",
        "4",
        "--root",
        &root,
        "--apply",
        "--dry-run",
        "--out",
        target_s,
    ]);
    assert_eq!(code, 0);
    assert!(!target.exists());

    // --apply --yes --out writes there (and never to /etc).
    let (code, out, err) = tune(&[
        "plan", "--shards", "4", "--root", &root, "--apply", "--yes", "--out", target_s,
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains(&format!("wrote {target_s}/coreshard.service")),
        "{out}"
    );
    let unit = std::fs::read_to_string(target.join("coreshard.service")).unwrap();
    assert!(unit.contains("--cores 1,2,3,4"));
    assert!(target.join("60-coreshard.conf").exists());
}

#[test]
fn usage_errors() {
    let f = Fixture::healthy(2, false);
    let root = f.dir.path().to_str().unwrap().to_string();
    let (code, _, err) = tune(&["plan", "--shards", "3", "--root", &root]);
    assert_eq!(code, 2);
    assert!(err.contains("3 shards need 3 CPUs"), "{err}");
    // --yes without --apply, and --out without --apply, are refused by the parser.
    let (code, _, _) = tune(&["plan", "--shards", "1", "--root", &root, "--yes"]);
    assert_eq!(code, 2);
    let (code, _, _) = tune(&["plan", "--shards", "1", "--root", &root, "--out", "/tmp/x"]);
    assert_eq!(code, 2);
    let (code, _, _) = tune(&["audit", "--root", &root, "--cores", "a-b"]);
    assert_eq!(code, 2);
    // An empty root is not an error: everything unreadable is reported.
    let empty = Fixture::empty();
    let (code, out, _) = tune(&["audit", "--root", empty.dir.path().to_str().unwrap()]);
    assert_eq!(code, 0);
    assert!(out.contains("could not read /proc/swaps"), "{out}");
}
