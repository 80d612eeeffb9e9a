//! How apps name mesh services: `<service>.<suffix>` (suffix `mesh` by default), and the bare
//! `<service>` label. The DNS answers these names and the outbound proxy routes them; both ask
//! [`MeshNames`], so a name means the same in both.

/// The naming rules of this node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MeshNames {
    /// The suffix, lowercase, without leading or trailing dots (`mesh`, `mesh.internal`).
    suffix: String,
    /// Whether the DNS answers a bare `<service>` too (the proxy always routes one).
    pub bare: bool,
}

impl Default for MeshNames {
    fn default() -> Self {
        Self {
            suffix: "mesh".into(),
            bare: false,
        }
    }
}

/// What a name is to the mesh.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Named<'a> {
    /// `<label>.<suffix>`: this label, whether or not such a service exists.
    Suffixed(&'a str),
    /// The suffix itself (`mesh.`).
    Apex,
    /// A single label with no suffix.
    Bare(&'a str),
    /// Anything else: a name outside the mesh.
    Outside,
}

impl MeshNames {
    /// Rules with `suffix` (validated: DNS labels separated by dots) and `bare`.
    pub fn new(suffix: &str, bare: bool) -> Result<Self, String> {
        let s = suffix.trim_matches('.').to_ascii_lowercase();
        let label_ok = |l: &str| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        };
        if s.is_empty() || !s.split('.').all(label_ok) {
            return Err(format!(
                "{suffix:?} is not a DNS suffix: use labels of letters, digits and '-' separated \
                 by dots, such as \"mesh\" or \"mesh.internal\""
            ));
        }
        Ok(Self { suffix: s, bare })
    }

    /// The suffix (`mesh`).
    pub fn suffix(&self) -> &str {
        &self.suffix
    }

    /// Classifies `name` (any case, with or without the root's trailing dot). Labels are
    /// returned as written; service names are lowercase, so callers compare lowercased.
    pub fn classify<'a>(&self, name: &'a str) -> Named<'a> {
        let name = name.strip_suffix('.').unwrap_or(name);
        if name.is_empty() {
            return Named::Outside;
        }
        if name.eq_ignore_ascii_case(&self.suffix) {
            return Named::Apex;
        }
        let cut = name.len().checked_sub(self.suffix.len() + 1);
        if let Some(at) = cut
            && name.is_char_boundary(at)
            && name.as_bytes()[at] == b'.'
            && name[at + 1..].eq_ignore_ascii_case(&self.suffix)
        {
            let label = &name[..at];
            return if label.contains('.') || label.is_empty() {
                Named::Outside
            } else {
                Named::Suffixed(label)
            };
        }
        if name.contains('.') {
            Named::Outside
        } else {
            Named::Bare(name)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_table() {
        let mesh = MeshNames::default();
        let long = MeshNames::new(".Mesh.Internal.", true).unwrap();
        assert_eq!(long.suffix(), "mesh.internal");
        let cases: &[(&MeshNames, &str, Named<'_>)] = &[
            (&mesh, "web.mesh.", Named::Suffixed("web")),
            (&mesh, "Web.MESH", Named::Suffixed("Web")),
            (&mesh, "mesh.", Named::Apex),
            (&mesh, "a.b.mesh", Named::Outside),
            (&mesh, ".mesh", Named::Outside),
            (&mesh, "web", Named::Bare("web")),
            (&mesh, "web.", Named::Bare("web")),
            (&mesh, "example.com.", Named::Outside),
            (&mesh, "notmesh", Named::Bare("notmesh")),
            (&mesh, "xmesh.", Named::Bare("xmesh")),
            (&mesh, "", Named::Outside),
            (&mesh, ".", Named::Outside),
            (&long, "api.mesh.internal.", Named::Suffixed("api")),
            (&long, "api.mesh.", Named::Outside),
            (&long, "mesh.internal", Named::Apex),
        ];
        for (names, name, want) in cases {
            assert_eq!(names.classify(name), *want, "{name:?}");
        }
        for bad in ["", ".", "a..b", "-x", "x_y", "ü"] {
            assert!(MeshNames::new(bad, false).is_err(), "{bad:?}");
        }
    }
}
