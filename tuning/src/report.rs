//! Text and JSON renderings of audit findings and plans.

use crate::json::Value;
use crate::plan::{Applied, Plan};
use crate::topology::format_cpu_list;
use crate::{Context, Finding, Severity};

/// Wrap `text` at `width` columns, every line after the first indented by `indent`.
fn wrap(text: &str, width: usize, indent: &str) -> String {
    let mut out = String::new();
    let mut col = indent.len();
    let mut first = true;
    for word in text.split_whitespace() {
        let len = word.chars().count();
        if !first && col + 1 + len > width {
            out.push('\n');
            out.push_str(indent);
            col = indent.len();
        } else if !first {
            out.push(' ');
            col += 1;
        }
        first = false;
        out.push_str(word);
        col += len;
    }
    out
}

/// The audit as text: a header, each finding worst first, a summary line.
pub fn audit_text(ctx: &Context, root_desc: &str, findings: &[Finding]) -> String {
    let mut s = format!(
        "coreshard-tune audit of {root_desc}: {} shard(s) on CPUs {}, kernel {}\n\n",
        ctx.shards,
        format_cpu_list(&ctx.shard_cores),
        ctx.kernel.as_deref().unwrap_or("?")
    );
    let indent = "           ";
    for f in findings {
        s.push_str(&format!(
            "[{:<4}] {}\n",
            f.severity.name().to_uppercase(),
            f.id
        ));
        s.push_str(&format!("   saw:    {}\n", wrap(&f.saw, 96, indent)));
        s.push_str(&format!("   why:    {}\n", wrap(&f.why, 96, indent)));
        if let Some(fix) = &f.fix {
            s.push_str(&format!("   fix:    {}\n", wrap(fix, 96, indent)));
        }
        s.push('\n');
    }
    let count = |sev: Severity| findings.iter().filter(|f| f.severity == sev).count();
    s.push_str(&format!(
        "summary: {} bad, {} warn, {} info, {} ok\n",
        count(Severity::Bad),
        count(Severity::Warn),
        count(Severity::Info),
        count(Severity::Ok)
    ));
    s
}

/// One finding as JSON.
pub fn finding_json(f: &Finding) -> Value {
    Value::obj([
        ("id", Value::str(&f.id)),
        ("severity", Value::str(f.severity.name())),
        ("saw", Value::str(&f.saw)),
        ("why", Value::str(&f.why)),
        ("fix", Value::opt_str(f.fix.as_deref())),
    ])
}

/// Read a finding back from [`finding_json`].
pub fn finding_from_json(v: &Value) -> Option<Finding> {
    Some(Finding {
        id: v.get("id")?.as_str()?.to_string(),
        severity: Severity::from_name(v.get("severity")?.as_str()?)?,
        saw: v.get("saw")?.as_str()?.to_string(),
        why: v.get("why")?.as_str()?.to_string(),
        fix: v.get("fix").and_then(|f| f.as_str()).map(str::to_string),
    })
}

/// The audit as JSON.
pub fn audit_json(ctx: &Context, root_desc: &str, findings: &[Finding]) -> Value {
    Value::obj([
        ("root", Value::str(root_desc)),
        ("kernel", Value::opt_str(ctx.kernel.as_deref())),
        ("shards", Value::Num(ctx.shards as f64)),
        ("shard_cpus", Value::nums(&ctx.shard_cores)),
        ("worst", Value::str(crate::worst(findings).name())),
        (
            "findings",
            Value::Arr(findings.iter().map(finding_json).collect()),
        ),
    ])
}

/// The plan as text.
pub fn plan_text(plan: &Plan, applied: Option<&Applied>) -> String {
    let l = &plan.layout;
    let mut s = String::from("core layout\n");
    let row = |name: &str, cpus: &[usize]| {
        format!(
            "  {name:<13} {}\n",
            if cpus.is_empty() {
                "-".to_string()
            } else {
                format_cpu_list(cpus)
            }
        )
    };
    s.push_str(&row("shards", &l.shard_cpus));
    s.push_str(&row("wal", &[l.wal_cpu]));
    s.push_str(&row("irq", &l.irq_cpus));
    s.push_str(&row("housekeeping", &l.housekeeping_cpus));
    s.push_str(&row("idle (SMT)", &l.idle_cpus));
    for n in &l.notes {
        s.push_str(&format!("  note: {}\n", wrap(n, 96, "        ")));
    }
    s.push_str(&format!("\ncommand line\n  {}\n", plan.command));
    for f in [&plan.sysctl, &plan.unit] {
        s.push_str(&format!("\n--- {} ---\n{}", f.path.display(), f.content));
    }
    s.push_str("\nsteps --apply does not do\n");
    for step in &plan.steps {
        s.push_str(&format!("  - {}\n", wrap(step, 96, "    ")));
    }
    match applied {
        Some(Applied::WouldWrite(paths)) => {
            s.push_str("\ndry run (add --yes to write):\n");
            for p in paths {
                s.push_str(&format!("  would write {}\n", p.display()));
            }
        }
        Some(Applied::Wrote(paths)) => {
            s.push('\n');
            for p in paths {
                s.push_str(&format!("wrote {}\n", p.display()));
            }
        }
        None => {}
    }
    s
}

/// The plan as JSON.
pub fn plan_json(plan: &Plan, applied: Option<&Applied>) -> Value {
    let l = &plan.layout;
    let file = |f: &crate::plan::PlanFile| {
        Value::obj([
            ("path", Value::str(f.path.display().to_string())),
            ("content", Value::str(&f.content)),
        ])
    };
    let paths = |v: &[std::path::PathBuf]| {
        Value::Arr(
            v.iter()
                .map(|p| Value::str(p.display().to_string()))
                .collect(),
        )
    };
    let applied = match applied {
        None => Value::Null,
        Some(Applied::WouldWrite(p)) => {
            Value::obj([("dry_run", Value::Bool(true)), ("files", paths(p))])
        }
        Some(Applied::Wrote(p)) => {
            Value::obj([("dry_run", Value::Bool(false)), ("files", paths(p))])
        }
    };
    Value::obj([
        (
            "layout",
            Value::obj([
                ("shard_cpus", Value::nums(&l.shard_cpus)),
                ("wal_cpu", Value::Num(l.wal_cpu as f64)),
                ("irq_cpus", Value::nums(&l.irq_cpus)),
                ("housekeeping_cpus", Value::nums(&l.housekeeping_cpus)),
                ("idle_cpus", Value::nums(&l.idle_cpus)),
                (
                    "notes",
                    Value::Arr(l.notes.iter().map(Value::str).collect()),
                ),
            ]),
        ),
        ("command", Value::str(&plan.command)),
        ("sysctl", file(&plan.sysctl)),
        ("unit", file(&plan.unit)),
        (
            "steps",
            Value::Arr(plan.steps.iter().map(Value::str).collect()),
        ),
        ("apply", applied),
    ])
}
