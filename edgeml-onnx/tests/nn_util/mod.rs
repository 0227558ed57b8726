//! Shared harness of the `nn_*` tests: rebuilds a node from a fixture's `case.txt`
//! (written by `scripts/make_nn_fixtures.py` from onnxruntime), calls the operator
//! factories directly and compares with the reference outputs.

#![allow(clippy::unwrap_used)] // test support code

use edgeml_onnx::ops::nn;
use edgeml_onnx::{Attribute, BuildContext, Node, Registry, Tensor};
use ndarray::ArrayD;
use ndarray_npy::read_npy;
use std::path::{Path, PathBuf};

pub(crate) struct Case {
    pub(crate) name: String,
    pub(crate) node: Node,
    pub(crate) opset: i64,
    pub(crate) tol: f32,
    pub(crate) inputs: Vec<Option<Tensor>>,
    pub(crate) outputs: Vec<Tensor>,
}

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/nn")
}

fn load_npy(path: &Path) -> Tensor {
    let name = path.file_name().unwrap().to_string_lossy().into_owned();
    if name.ends_with(".f32.npy") {
        Tensor::F32(read_npy::<_, ArrayD<f32>>(path).unwrap())
    } else if name.ends_with(".i32.npy") {
        Tensor::I32(read_npy::<_, ArrayD<i32>>(path).unwrap())
    } else if name.ends_with(".i64.npy") {
        Tensor::I64(read_npy::<_, ArrayD<i64>>(path).unwrap())
    } else {
        panic!("unknown fixture dtype {name}")
    }
}

pub(crate) fn load(dir: &Path) -> Case {
    let text = std::fs::read_to_string(dir.join("case.txt")).unwrap();
    let mut node = Node::default();
    let (mut opset, mut tol) = (17, 1e-4f32);
    let (mut inputs, mut outputs) = (Vec::new(), Vec::new());
    for line in text.lines() {
        let parts: Vec<&str> = line.split_whitespace().collect();
        match parts.as_slice() {
            ["op", op] => node.op_type = (*op).to_owned(),
            ["domain", d] => node.domain = (*d).to_owned(),
            ["opset", v] => opset = v.parse().unwrap(),
            ["tol", v] => tol = v.parse().unwrap(),
            ["anchor", ..] => {}
            ["input", "-"] => {
                inputs.push(None);
                node.inputs.push(String::new());
            }
            ["input", f] => {
                inputs.push(Some(load_npy(&dir.join(f))));
                node.inputs.push(format!("in{}", inputs.len() - 1));
            }
            ["output", f] => {
                outputs.push(load_npy(&dir.join(f)));
                node.outputs.push(format!("out{}", outputs.len() - 1));
            }
            ["attr", name, kind, rest @ ..] => {
                let a = match *kind {
                    "i" => Attribute::Int(rest[0].parse().unwrap()),
                    "f" => Attribute::Float(rest[0].parse().unwrap()),
                    "s" => Attribute::String(rest[0].as_bytes().to_vec()),
                    "is" => Attribute::Ints(rest.iter().map(|v| v.parse().unwrap()).collect()),
                    "fs" => Attribute::Floats(rest.iter().map(|v| v.parse().unwrap()).collect()),
                    "ss" => {
                        Attribute::Strings(rest.iter().map(|v| v.as_bytes().to_vec()).collect())
                    }
                    other => panic!("unknown attribute kind {other}"),
                };
                node.attributes.push(((*name).to_owned(), a));
            }
            other => panic!("bad case line {other:?}"),
        }
    }
    node.name = dir.file_name().unwrap().to_string_lossy().into_owned();
    Case {
        name: node.name.clone(),
        node,
        opset,
        tol,
        inputs,
        outputs,
    }
}

pub(crate) fn registry() -> Registry {
    let mut r = Registry::empty();
    nn::register(&mut r);
    r
}

/// Runs the case with the given inputs treated as plan-time constants.
pub(crate) fn run(case: &Case, const_mask: &[bool]) -> Vec<Tensor> {
    let reg = registry();
    let f = reg
        .lookup(&case.node.domain, &case.node.op_type, case.opset)
        .unwrap_or_else(|| panic!("{}: no factory for {}", case.name, case.node.op_type));
    let consts = case
        .inputs
        .iter()
        .zip(const_mask)
        .map(|(t, &c)| if c { t.as_ref() } else { None })
        .collect();
    let op = f
        .build(&BuildContext::new(&case.node, case.opset, consts))
        .unwrap();
    let ins: Vec<Option<&Tensor>> = case.inputs.iter().map(|t| t.as_ref()).collect();
    op.run(&ins)
        .unwrap_or_else(|e| panic!("{}: {e}", case.name))
}

pub(crate) fn compare(case: &Case, got: &[Tensor], what: &str) {
    assert_eq!(
        got.len(),
        case.outputs.len(),
        "{}: output count ({what})",
        case.name
    );
    for (i, (g, w)) in got.iter().zip(&case.outputs).enumerate() {
        assert_eq!(
            g.shape(),
            w.shape(),
            "{} output {i} shape ({what})",
            case.name
        );
        match (g, w) {
            (Tensor::F32(g), Tensor::F32(w)) => {
                for (j, (&a, &b)) in g.iter().zip(w.iter()).enumerate() {
                    let tol = case.tol * (1.0 + b.abs());
                    assert!(
                        (a - b).abs() <= tol,
                        "{} output {i}[{j}] ({what}): got {a}, want {b}",
                        case.name
                    );
                }
            }
            (Tensor::I64(g), Tensor::I64(w)) => {
                assert_eq!(g, w, "{} output {i} ({what})", case.name)
            }
            _ => panic!(
                "{} output {i}: dtype {:?} vs {:?}",
                case.name,
                g.dtype(),
                w.dtype()
            ),
        }
    }
}

/// Runs every fixture whose name starts with one of `prefixes`: weights as run-time
/// inputs (serial) and as plan-time constants (in a 3-thread pool).
pub(crate) fn run_all(prefixes: &[&str]) {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(fixtures())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let n = p.file_name().unwrap().to_string_lossy().into_owned();
            prefixes.iter().any(|pre| n.starts_with(pre))
        })
        .collect();
    dirs.sort();
    assert!(!dirs.is_empty(), "no fixtures for {prefixes:?}");
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(3)
        .build()
        .unwrap();
    for d in dirs {
        let case = load(&d);
        let n = case.inputs.len();
        let none = vec![false; n];
        compare(&case, &run(&case, &none), "runtime weights");
        let weights: Vec<bool> = (0..n).map(|i| i > 0).collect();
        pool.install(|| compare(&case, &run(&case, &weights), "constant weights, 3 threads"));
    }
}
