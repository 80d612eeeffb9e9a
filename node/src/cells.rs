//! Which cell a node belongs to, and how it reaches the other cells.
//!
//! Members, health and heartbeats gossip only within a cell; each cell's custodians carry its
//! summary and the mesh's policy documents between cells (`murmur_membership::cells`). A node
//! without `cell` and without cell seeds is in the default cell with the link off: a single-cell
//! mesh gossips exactly as before, under the same cluster id.

use murmur_transport::identity::Name;

/// The cell a node is in when none is configured.
pub const DEFAULT_CELL: &str = "default";

/// Separates the mesh's cluster id from a cell's name in the cell's cluster id. A cell name is a
/// DNS label, so it never holds this character: no cell's id can equal another's or the top
/// layer's.
const CELL_SEPARATOR: char = '/';

/// Suffix of the top layer's cluster id (custodians of every cell): `<mesh>-top`, which no
/// cell of the same mesh (`<mesh>/<cell>`) can have; with the default mesh id, `murmur-top`.
const TOP_SUFFIX: &str = "-top";

/// A node's cell and its way to the other cells.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CellSettings {
    /// The cell's name (a DNS label).
    pub name: String,
    /// Mesh addresses (`host:port`) of nodes in other cells, tried when this node becomes a
    /// custodian and knows no other cell's custodians yet.
    pub seeds: Vec<String>,
    /// Whether the cell link runs: a cell was named, or seeds of other cells were given.
    pub linked: bool,
    /// The cluster id of the top layer.
    pub top_cluster_id: String,
}

impl CellSettings {
    /// The cell named `name` (the default cell if `None`) of mesh `mesh`, with `seeds` in
    /// other cells.
    pub fn new(name: Option<Name>, seeds: Vec<String>, mesh: &str) -> Self {
        let linked = name.is_some() || !seeds.is_empty();
        Self {
            name: name.map_or_else(|| DEFAULT_CELL.to_owned(), |n| n.as_str().to_owned()),
            seeds,
            linked,
            top_cluster_id: format!("{mesh}{TOP_SUFFIX}"),
        }
    }

    /// Whether this is the default cell.
    pub fn is_default(&self) -> bool {
        self.name == DEFAULT_CELL
    }

    /// The cluster id the cell's own gossip uses, from the mesh's (`[gossip] cluster_id`): the
    /// mesh's own for the default cell, so a mesh that names no cell is unchanged;
    /// `<mesh>/<cell>` otherwise, so a node configured into the wrong cell is refused at its
    /// first gossip message.
    pub fn cluster_id(&self, mesh: &str) -> String {
        if self.is_default() {
            mesh.to_owned()
        } else {
            format!("{mesh}{CELL_SEPARATOR}{}", self.name)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cell(name: &str) -> CellSettings {
        CellSettings::new(
            Some(Name::parse("cell", name).unwrap()),
            Vec::new(),
            "murmur",
        )
    }

    #[test]
    fn no_cell_keeps_the_mesh_cluster_id_and_the_link_off() {
        let s = CellSettings::new(None, Vec::new(), "murmur");
        assert!(s.is_default() && !s.linked);
        assert_eq!(s.cluster_id("murmur"), "murmur");
        assert_eq!(s.top_cluster_id, "murmur-top");
    }

    #[test]
    fn a_named_cell_gossips_under_its_own_id_and_links() {
        let a = cell("eu-1");
        assert!(a.linked && !a.is_default());
        assert_eq!(a.cluster_id("murmur"), "murmur/eu-1");
        assert_ne!(a.cluster_id("murmur"), cell("eu-2").cluster_id("murmur"));
        assert_ne!(a.cluster_id("murmur"), a.top_cluster_id);
        // The default cell named explicitly links, and keeps the mesh's id.
        let d = cell(DEFAULT_CELL);
        assert!(d.linked && d.is_default());
        assert_eq!(d.cluster_id("prod"), "prod");
    }

    #[test]
    fn seeds_alone_link_the_default_cell() {
        let s = CellSettings::new(None, vec!["10.0.0.9:7420".into()], "prod");
        assert!(s.linked && s.is_default());
        assert_eq!(s.top_cluster_id, "prod-top");
    }
}
