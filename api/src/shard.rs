//! Running on several devices (issue 20): the mesh and the layout of
//! `main`'s arguments, as [`RunConfig`](crate::RunConfig) gives them, and
//! parsing them from the command line's `--mesh` and `--shard`.

use crate::error::Error;
use loopvm_vm::{Func, TypeTree};

pub use loopvm_jit::hlo::{Mesh, MeshAxis, ShardSpec};

/// One argument of `main` to shard: `--shard NAME=AXIS[:MESH_AXIS]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShardArg {
    /// The parameter's name.
    pub name: String,
    /// Its axis and the mesh axis it is split over.
    pub spec: ShardSpec,
}

impl ShardArg {
    /// Parses `x=0` (axis 0 over `data`) or `w=1:model`.
    pub fn parse(s: &str) -> Result<ShardArg, Error> {
        let bad =
            || Error::arg(format!("`--shard {s}` is not of the form NAME=AXIS or NAME=AXIS:MESH_AXIS (data or model)"));
        let (name, rest) = s.split_once('=').ok_or_else(bad)?;
        let (axis, mesh_axis) = match rest.split_once(':') {
            Some((a, m)) => (a, MeshAxis::parse(m.trim()).ok_or_else(bad)?),
            None => (rest, MeshAxis::Data),
        };
        let axis = axis.trim().parse::<usize>().map_err(|_| bad())?;
        let name = name.trim();
        if name.is_empty() {
            return Err(bad());
        }
        Ok(ShardArg { name: name.to_string(), spec: ShardSpec { axis, mesh_axis } })
    }
}

/// The most devices a mesh may have (the CPU plugin starts one thread pool
/// per device it is asked for: a mistyped count would seem to hang).
pub const MAX_DEVICES: usize = 256;

/// The mesh of a run: `mesh` when given (its device count must be
/// `devices`, unless `devices` is 0 or 1), else a 1-D `data` mesh of
/// `devices` (0 or 1: one device); at most [`MAX_DEVICES`] devices.
pub fn mesh_of(devices: usize, mesh: Option<Mesh>) -> Result<Mesh, Error> {
    let asked = mesh.map_or(devices, |m| m.devices());
    if asked > MAX_DEVICES {
        return Err(Error::arg(format!("{asked} devices asked for: at most {MAX_DEVICES}")));
    }
    match mesh {
        Some(m) if m.devices() == 0 => Err(Error::arg("a mesh needs at least one device")),
        Some(m) if devices > 1 && m.devices() != devices => Err(Error::arg(format!(
            "the mesh {}x{} has {} devices, but {devices} devices were asked for",
            m.data,
            m.model,
            m.devices()
        ))),
        Some(m) => Ok(m),
        None => Ok(Mesh::data(devices.max(1))),
    }
}

/// The layout of each flattened parameter of `func` (`None`: replicated):
/// an error for an unknown name, a name given twice, a tuple parameter or
/// an axis the parameter does not have.
pub fn param_shards(func: &Func, shard: &[ShardArg]) -> Result<Vec<Option<ShardSpec>>, Error> {
    let mut out = Vec::new();
    for (k, s) in shard.iter().enumerate() {
        if shard[..k].iter().any(|t| t.name == s.name) {
            return Err(Error::arg(format!("`--shard {}` given twice", s.name)));
        }
        if !func.params.iter().any(|p| p.name == s.name) {
            let names: Vec<&str> = func.params.iter().map(|p| p.name.as_str()).collect();
            return Err(Error::arg(format!(
                "`{}` has no parameter `{}` to shard (parameters: {})",
                func.name,
                s.name,
                names.join(", ")
            )));
        }
    }
    for p in &func.params {
        let given = shard.iter().find(|s| s.name == p.name);
        match (&p.ty, given) {
            (TypeTree::Tensor(t), Some(s)) => {
                if s.spec.axis >= t.dims.len() {
                    return Err(Error::arg(format!(
                        "cannot shard `{}` along axis {}: it has rank {}",
                        p.name,
                        s.spec.axis,
                        t.dims.len()
                    )));
                }
                out.push(Some(s.spec));
            }
            (_, Some(_)) => {
                return Err(Error::arg(format!("`{}` is a tuple; only tensor parameters can be sharded", p.name)));
            }
            (ty, None) => out.extend(std::iter::repeat_n(None, ty.leaves().len())),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shard_args_parse() {
        let a = ShardArg::parse("x=0").unwrap();
        assert_eq!(a, ShardArg { name: "x".into(), spec: ShardSpec { axis: 0, mesh_axis: MeshAxis::Data } });
        let b = ShardArg::parse("w=1:model").unwrap();
        assert_eq!(b.spec, ShardSpec { axis: 1, mesh_axis: MeshAxis::Model });
        for bad in ["x", "=0", "x=a", "x=0:batch", "x=-1"] {
            assert!(ShardArg::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn meshes() {
        assert_eq!(mesh_of(4, None).unwrap(), Mesh::data(4));
        assert_eq!(mesh_of(0, None).unwrap(), Mesh::default());
        assert_eq!(mesh_of(4, Some(Mesh { data: 2, model: 2 })).unwrap(), Mesh { data: 2, model: 2 });
        assert_eq!(mesh_of(0, Some(Mesh { data: 2, model: 2 })).unwrap(), Mesh { data: 2, model: 2 });
        let e = mesh_of(100_000, None).unwrap_err().to_string();
        assert!(e.contains("100000 devices asked for: at most 256"), "{e}");
        let e = mesh_of(8, Some(Mesh { data: 2, model: 2 })).unwrap_err().to_string();
        assert!(e.contains("2x2 has 4 devices, but 8"), "{e}");
    }
}
