//! `edgeml drift`: compare two CSV files column by column.

use anyhow::{Context, bail};
use edgeml_drift::report::{
    ColumnValues, Correction, DriftReport, ReportConfig, TestKind, drift_report,
};
use std::io::Write;
use std::path::{Path, PathBuf};

/// Arguments of `edgeml drift`.
#[derive(clap::Args, Debug)]
pub(crate) struct Args {
    /// Reference CSV (header row, one column per feature).
    reference: PathBuf,
    /// Current CSV (same columns, any order).
    current: PathBuf,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
    /// Test for every column: auto (Evidently's defaults), ks, mann_whitney, cvm, anderson,
    /// wasserstein, energy, psi, kl, js, hellinger, tv, chi2, z.
    #[arg(long, default_value = "auto")]
    test: String,
    /// Threshold (p-value tests: drift when p < threshold; distances: when >= threshold).
    #[arg(long)]
    threshold: Option<f64>,
    /// Multiple-testing correction of p-values: none, bonferroni, bh.
    #[arg(long, default_value = "none")]
    correction: String,
    /// Exit with status 2 when dataset drift is detected.
    #[arg(long)]
    fail_on_drift: bool,
}

/// Named columns of one CSV file.
type Columns = Vec<(String, ColumnValues)>;

/// Reads a CSV with a header row into named columns (type inferred per column).
fn read_csv(path: &Path) -> anyhow::Result<Vec<(String, Vec<String>)>> {
    let mut rdr = csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(false)
        .from_path(path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    let headers: Vec<String> = rdr
        .headers()
        .with_context(|| format!("cannot read the header row of {}", path.display()))?
        .iter()
        .map(|h| h.trim().to_string())
        .collect();
    if headers.is_empty() || headers.iter().all(String::is_empty) {
        bail!("{}: no header row", path.display());
    }
    let mut cols: Vec<Vec<String>> = vec![Vec::new(); headers.len()];
    for (i, rec) in rdr.records().enumerate() {
        let rec = rec.with_context(|| format!("{}: bad record {}", path.display(), i + 2))?;
        for (c, v) in cols.iter_mut().zip(rec.iter()) {
            c.push(v.to_string());
        }
    }
    Ok(headers.into_iter().zip(cols).collect())
}

/// Infers each column's type on both files together, so a column is numeric only if
/// it is numeric in both.
fn columns(r: Vec<(String, Vec<String>)>, c: Vec<(String, Vec<String>)>) -> (Columns, Columns) {
    let mut rv = Vec::new();
    let mut cv = Vec::new();
    let cmap: std::collections::HashMap<&str, &Vec<String>> =
        c.iter().map(|(n, v)| (n.as_str(), v)).collect();
    for (name, cells) in &r {
        let a = ColumnValues::infer(cells);
        if let Some(other) = cmap.get(name.as_str()) {
            let b = ColumnValues::infer(other);
            let (a, b) = match (&a, &b) {
                (ColumnValues::Numeric(_), ColumnValues::Numeric(_)) => (a, b),
                _ => (cat(cells), cat(other)),
            };
            rv.push((name.clone(), a));
            cv.push((name.clone(), b));
        } else {
            rv.push((name.clone(), a));
        }
    }
    let rnames: std::collections::HashSet<&str> = r.iter().map(|(n, _)| n.as_str()).collect();
    for (name, cells) in &c {
        if !rnames.contains(name.as_str()) {
            cv.push((name.clone(), ColumnValues::infer(cells)));
        }
    }
    (rv, cv)
}

fn cat(cells: &[String]) -> ColumnValues {
    ColumnValues::Categorical(
        cells
            .iter()
            .map(|s| (!s.trim().is_empty()).then(|| s.trim().to_string()))
            .collect(),
    )
}

fn print_table(rep: &DriftReport, out: &mut impl Write) -> std::io::Result<()> {
    writeln!(
        out,
        "{:<24} {:<12} {:<12} {:>12} {:>12} {:>9} {:>7} {:>9} {:>9}",
        "feature",
        "type",
        "test",
        "statistic",
        "p-value",
        "threshold",
        "drift",
        "ref nonfin",
        "cur nonfin"
    )?;
    for f in &rep.features {
        let s = f.statistic.map_or("-".to_string(), |v| format!("{v:.6}"));
        let p = f
            .p_value_adjusted
            .map_or("-".to_string(), |v| format!("{v:.4e}"));
        writeln!(
            out,
            "{:<24} {:<12} {:<12} {:>12} {:>12} {:>9} {:>7} {:>9} {:>9}{}",
            f.name,
            f.kind,
            format!("{:?}", f.test).to_lowercase(),
            s,
            p,
            f.threshold,
            if f.drifted { "YES" } else { "no" },
            f.nonfinite_reference.total(),
            f.nonfinite_current.total(),
            f.note
                .as_ref()
                .map_or(String::new(), |n| format!("  ({n})")),
        )?;
    }
    writeln!(
        out,
        "drifted features: {}/{} ({:.1}%), dataset drift: {}",
        rep.n_drifted,
        rep.features.len(),
        100.0 * rep.share_drifted,
        if rep.dataset_drift { "YES" } else { "no" }
    )
}

/// Runs `edgeml drift`.
pub(crate) fn main(args: Args) -> anyhow::Result<()> {
    let test =
        TestKind::parse(&args.test).with_context(|| format!("unknown --test `{}`", args.test))?;
    let correction = match args.correction.as_str() {
        "none" => Correction::None,
        "bonferroni" => Correction::Bonferroni,
        "bh" | "fdr_bh" => Correction::BenjaminiHochberg,
        other => bail!("unknown --correction `{other}` (none, bonferroni, bh)"),
    };
    if let Some(t) = args.threshold
        && (!t.is_finite() || t < 0.0)
    {
        bail!("--threshold must be a finite non-negative number, got {t}");
    }
    let r = read_csv(&args.reference)?;
    let c = read_csv(&args.current)?;
    let (rv, cv) = columns(r, c);
    let cfg = ReportConfig {
        test,
        threshold: args.threshold,
        correction,
        ..Default::default()
    };
    let rep = drift_report(&rv, &cv, &cfg).context("drift report")?;
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let written = if args.json {
        serde_json::to_string_pretty(&rep)
            .map_err(std::io::Error::other)
            .and_then(|s| writeln!(out, "{s}"))
    } else {
        print_table(&rep, &mut out)
    };
    match written {
        // a closed pipe (`| head`) is not an error
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => return Ok(()),
        other => other.context("writing the report")?,
    }
    if args.fail_on_drift && rep.dataset_drift {
        std::process::exit(2);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(name: &str, body: &str) -> PathBuf {
        let p = std::env::temp_dir().join(format!("edgeml-drift-{}-{name}", std::process::id()));
        std::fs::write(&p, body).expect("write");
        p
    }

    #[test]
    fn csv_columns_are_typed_on_both_files() {
        let r = write("r.csv", "x,c,m\n1,a,1\n2,b,2\n3,a,\n");
        let c = write("c.csv", "c,x,m\nz,1.5,q\nb,nan,1\n");
        let (rv, cv) = columns(read_csv(&r).expect("r"), read_csv(&c).expect("c"));
        assert!(matches!(rv[0].1, ColumnValues::Numeric(_)));
        assert!(matches!(rv[1].1, ColumnValues::Categorical(_)));
        // numeric in the reference but not in the current file: categorical on both
        assert!(matches!(rv[2].1, ColumnValues::Categorical(_)));
        assert!(
            cv.iter()
                .all(|(n, v)| n != "m" || matches!(v, ColumnValues::Categorical(_)))
        );
        let rep = drift_report(&rv, &cv, &ReportConfig::default()).expect("report");
        assert_eq!(rep.features[0].nonfinite_current.nan, 1);
        for p in [r, c] {
            let _ = std::fs::remove_file(p);
        }
    }

    #[test]
    fn mismatched_and_ragged_files_are_errors() {
        let r = write("r2.csv", "x,y\n1,2\n");
        let c = write("c2.csv", "x,z\n1,2\n");
        let (rv, cv) = columns(read_csv(&r).expect("r"), read_csv(&c).expect("c"));
        let e = drift_report(&rv, &cv, &ReportConfig::default()).expect_err("schema");
        assert!(e.to_string().contains("\"y\""));
        let bad = write("bad.csv", "x,y\n1,2\n3\n");
        assert!(read_csv(&bad).is_err());
        for p in [r, c, bad] {
            let _ = std::fs::remove_file(p);
        }
    }
}
