//! Sharding annotations for XLA's SPMD partitioner (issue 20): the device
//! mesh, how a value is laid out on it, and the text of those layouts in
//! the two dialects XLA reads: GSPMD (`mhlo.sharding = "{devices=...}"`,
//! constraints as `stablehlo.custom_call @Sharding`) and Shardy
//! (`sdy.mesh`, `#sdy.sharding`, `sdy.sharding_constraint`).
//!
//! The mesh has two named axes, `data` and `model` (a 1-D mesh is
//! `data × 1`); device `d * model + m` sits at mesh position `(d, m)`, and
//! partition `p` of an executable runs on the `p`-th device of the client.
//! A value is either replicated or split along one of its axes over one
//! mesh axis (replicated over the other), as `jax.sharding.NamedSharding`
//! with a `PartitionSpec` naming one mesh axis.

use super::{EmitError, Emitter, Val};
use std::fmt;

/// An axis of the device mesh.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MeshAxis {
    /// `data` (the first axis: data parallelism).
    Data,
    /// `model` (the second axis).
    Model,
}

impl MeshAxis {
    /// The axis's code in the `Shard` instruction's `mesh_axis` attribute.
    pub fn code(self) -> u32 {
        match self {
            MeshAxis::Data => 0,
            MeshAxis::Model => 1,
        }
    }
    /// The axis of a `mesh_axis` code.
    pub fn from_code(code: u32) -> Option<MeshAxis> {
        match code {
            0 => Some(MeshAxis::Data),
            1 => Some(MeshAxis::Model),
            _ => None,
        }
    }
    /// `data` or `model`.
    pub fn name(self) -> &'static str {
        match self {
            MeshAxis::Data => "data",
            MeshAxis::Model => "model",
        }
    }
    /// Parses `data` or `model`.
    pub fn parse(s: &str) -> Option<MeshAxis> {
        match s {
            "data" => Some(MeshAxis::Data),
            "model" => Some(MeshAxis::Model),
            _ => None,
        }
    }
}

/// A device mesh `data × model` (`Mesh::default()`: one device).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Mesh {
    /// Devices along `data`.
    pub data: usize,
    /// Devices along `model`.
    pub model: usize,
}

impl Default for Mesh {
    fn default() -> Mesh {
        Mesh { data: 1, model: 1 }
    }
}

impl Mesh {
    /// A 1-D mesh of `n` devices along `data`.
    pub fn data(n: usize) -> Mesh {
        Mesh { data: n.max(1), model: 1 }
    }
    /// The number of devices.
    pub fn devices(self) -> usize {
        self.data.saturating_mul(self.model)
    }
    /// The devices along `axis`.
    pub fn size(self, axis: MeshAxis) -> usize {
        match axis {
            MeshAxis::Data => self.data,
            MeshAxis::Model => self.model,
        }
    }
    /// Parses `4` (a 1-D mesh) or `2x2` (`data × model`).
    pub fn parse(s: &str) -> Option<Mesh> {
        let n = |t: &str| t.trim().parse::<usize>().ok().filter(|&n| n >= 1);
        match s.split_once(['x', 'X']) {
            Some((d, m)) => Some(Mesh { data: n(d)?, model: n(m)? }),
            None => Some(Mesh::data(n(s)?)),
        }
    }
    /// Which part of a value split over `axis` device `device` holds (its
    /// position along that mesh axis).
    pub fn part_of(self, device: usize, axis: MeshAxis) -> usize {
        let model = self.model.max(1);
        match axis {
            MeshAxis::Data => device / model,
            MeshAxis::Model => device % model,
        }
    }
}

impl fmt::Display for Mesh {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.model == 1 {
            write!(f, "data={}", self.data)
        } else {
            write!(f, "data={} x model={}", self.data, self.model)
        }
    }
}

/// A value split along its axis `axis` over the mesh axis `mesh_axis`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ShardSpec {
    /// The value's axis.
    pub axis: usize,
    /// The mesh axis it is split over.
    pub mesh_axis: MeshAxis,
}

impl fmt::Display for ShardSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "axis {} over `{}`", self.axis, self.mesh_axis.name())
    }
}

/// Which annotations the emitter writes. The CPU plugin (XLA of JAX 0.10)
/// accepts both; Shardy is the default, as in JAX (GSPMD's propagation
/// logs a deprecation warning).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum ShardDialect {
    /// GSPMD: `mhlo.sharding` strings.
    Gspmd,
    /// Shardy: `sdy.mesh` and `#sdy.sharding` (compiled with
    /// `use_shardy_partitioner`).
    #[default]
    Shardy,
}

/// The GSPMD sharding text of a value of rank `rank`: `{replicated}`, or
/// `{devices=[1,4]0,1,2,3}` (the tile counts per axis, then the devices in
/// tile order), with `last_tile_dim_replicate` and a trailing tile
/// dimension for the mesh axis it is replicated over.
pub fn gspmd_sharding(mesh: Mesh, rank: usize, spec: Option<ShardSpec>) -> String {
    let Some(spec) = spec.filter(|s| s.axis < rank && mesh.size(s.mesh_axis) > 1) else {
        return "{replicated}".into();
    };
    let split = mesh.size(spec.mesh_axis);
    let other = mesh.devices() / split;
    let mut tiles = vec![1usize; rank];
    tiles[spec.axis] = split;
    if other > 1 {
        tiles.push(other);
    }
    let mut devices = Vec::with_capacity(mesh.devices());
    for i in 0..split {
        for j in 0..other {
            devices.push(match spec.mesh_axis {
                MeshAxis::Data => i * mesh.model + j,
                MeshAxis::Model => j * mesh.model + i,
            });
        }
    }
    let join = |v: &[usize]| v.iter().map(usize::to_string).collect::<Vec<_>>().join(",");
    let replicate = if other > 1 { " last_tile_dim_replicate" } else { "" };
    format!("{{devices=[{}]{}{replicate}}}", join(&tiles), join(&devices))
}

/// The Shardy mesh declaration, e.g. `sdy.mesh @mesh = <["data"=4]>`.
pub fn sdy_mesh(mesh: Mesh) -> String {
    if mesh.model == 1 {
        format!("sdy.mesh @mesh = <[\"data\"={}]>", mesh.data)
    } else {
        format!("sdy.mesh @mesh = <[\"data\"={}, \"model\"={}]>", mesh.data, mesh.model)
    }
}

/// The Shardy per-axis list of a value of rank `rank`, e.g.
/// `[{"data"}, {}]` (`[]` for a scalar).
pub fn sdy_dims(rank: usize, spec: Option<ShardSpec>) -> String {
    let dims: Vec<String> = (0..rank)
        .map(|a| match spec {
            Some(s) if s.axis == a => format!("{{\"{}\"}}", s.mesh_axis.name()),
            _ => "{}".into(),
        })
        .collect();
    format!("[{}]", dims.join(", "))
}

/// The attribute of a parameter or result, e.g. `{mhlo.sharding =
/// "{replicated}"}` (empty on one device).
pub(crate) fn attr(dialect: ShardDialect, mesh: Mesh, rank: usize, spec: Option<ShardSpec>) -> String {
    if mesh.devices() <= 1 {
        return String::new();
    }
    match dialect {
        ShardDialect::Gspmd => format!(" {{mhlo.sharding = \"{}\"}}", gspmd_sharding(mesh, rank, spec)),
        ShardDialect::Shardy => {
            let spec = spec.filter(|s| mesh.size(s.mesh_axis) > 1);
            format!(" {{sdy.sharding = #sdy.sharding<@mesh, {}>}}", sdy_dims(rank, spec))
        }
    }
}

/// Checks a sharding constraint of `x` and returns it as a spec (an error
/// naming the op for an axis the value lacks or an unknown mesh axis).
fn spec_of(x: &Val, axis: u32, mesh_axis: u32) -> Result<ShardSpec, EmitError> {
    let mesh_axis = MeshAxis::from_code(mesh_axis).ok_or_else(|| {
        EmitError::new("shard", format!("mesh axis code {mesh_axis} is neither data (0) nor model (1)"))
    })?;
    let axis = axis as usize;
    if axis >= x.shape.len() {
        return Err(EmitError::new("shard", format!("axis {axis} is out of range for {}", x.ty())));
    }
    Ok(ShardSpec { axis, mesh_axis })
}

impl Emitter<'_> {
    /// `shard(x, axis, mesh_axis)`: on one device `x` itself; on a mesh, a
    /// sharding constraint (`stablehlo.custom_call @Sharding` with an
    /// `mhlo.sharding`, or `sdy.sharding_constraint`), which XLA's
    /// partitioner reads and removes.
    pub(super) fn shard(&mut self, x: &Val, axis: u32, mesh_axis: u32) -> Result<Val, EmitError> {
        let spec = spec_of(x, axis, mesh_axis)?;
        let mesh = self.opts.mesh;
        if mesh.devices() <= 1 {
            return Ok(x.clone());
        }
        let ty = x.ty();
        let rhs = match self.opts.shard_dialect {
            ShardDialect::Gspmd => format!(
                "stablehlo.custom_call @Sharding({}) {{mhlo.sharding = \"{}\"}} : ({ty}) -> {ty}",
                x.name,
                gspmd_sharding(mesh, x.shape.len(), Some(spec))
            ),
            ShardDialect::Shardy => {
                // A mesh axis of one device is not declared: replicated.
                let spec = Some(spec).filter(|s| mesh.size(s.mesh_axis) > 1);
                format!("sdy.sharding_constraint {} <@mesh, {}> : {ty}", x.name, sdy_dims(x.shape.len(), spec))
            }
        };
        let v = self.op(x.dtype, &x.shape, rhs);
        let spec = Some(spec).filter(|s| mesh.size(s.mesh_axis) > 1);
        if let Some(s) = spec {
            self.sharded.insert(v.name.clone(), s);
        }
        Ok(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gspmd_texts() {
        let d = |axis| Some(ShardSpec { axis, mesh_axis: MeshAxis::Data });
        let m = |axis| Some(ShardSpec { axis, mesh_axis: MeshAxis::Model });
        assert_eq!(gspmd_sharding(Mesh::data(4), 2, d(0)), "{devices=[4,1]0,1,2,3}");
        assert_eq!(gspmd_sharding(Mesh::data(4), 2, d(1)), "{devices=[1,4]0,1,2,3}");
        assert_eq!(gspmd_sharding(Mesh::data(4), 2, None), "{replicated}");
        assert_eq!(gspmd_sharding(Mesh::data(4), 0, d(0)), "{replicated}");
        let mesh = Mesh { data: 2, model: 2 };
        assert_eq!(gspmd_sharding(mesh, 2, d(0)), "{devices=[2,1,2]0,1,2,3 last_tile_dim_replicate}");
        assert_eq!(gspmd_sharding(mesh, 2, m(1)), "{devices=[1,2,2]0,2,1,3 last_tile_dim_replicate}");
        assert_eq!(gspmd_sharding(Mesh { data: 1, model: 4 }, 1, d(0)), "{replicated}");
    }

    #[test]
    fn shardy_texts() {
        assert_eq!(sdy_mesh(Mesh { data: 2, model: 2 }), "sdy.mesh @mesh = <[\"data\"=2, \"model\"=2]>");
        assert_eq!(sdy_dims(2, Some(ShardSpec { axis: 1, mesh_axis: MeshAxis::Model })), "[{}, {\"model\"}]");
        assert_eq!(sdy_dims(0, None), "[]");
    }

    #[test]
    fn meshes_parse() {
        assert_eq!(Mesh::parse("4"), Some(Mesh::data(4)));
        assert_eq!(Mesh::parse("2x2"), Some(Mesh { data: 2, model: 2 }));
        assert_eq!(Mesh::parse("0"), None);
        assert_eq!(Mesh::parse("2x"), None);
        let mesh = Mesh { data: 2, model: 2 };
        assert_eq!((0..4).map(|d| mesh.part_of(d, MeshAxis::Data)).collect::<Vec<_>>(), [0, 0, 1, 1]);
        assert_eq!((0..4).map(|d| mesh.part_of(d, MeshAxis::Model)).collect::<Vec<_>>(), [0, 1, 0, 1]);
    }
}
