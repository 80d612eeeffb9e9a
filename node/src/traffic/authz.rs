//! `authz`: whether a caller may make a request of a service, decided by the serving node on
//! what the caller's certificate proves and on the normalized path. Pure.
//!
//! Who the caller is: the calling *node*'s certificate, verified by mutual TLS — its SPIFFE ID
//! (`spiffe://<trust-domain>/node/<name>`) and the services it names (`<s>.svc.<trust-domain>`).
//! `{ service = "frontend" }` matches a caller whose certificate names `frontend`: nothing the
//! caller merely says about itself is trusted, so a node serving several services is, for
//! authorization, each of them.
//!
//! Rules of a document are tried in order; the first whose conditions all hold decides; when
//! none does, `default` decides. When several documents apply to a service, a request must be
//! allowed by every enforcing one; documents in shadow mode only report what they would deny.
//! A TCP connection has no method or path: a rule that names paths or methods never matches it.

use std::collections::BTreeSet;

use murmur_membership::policy::spec::{Action, AuthzMode, AuthzSpec, CallerMatch};
use murmur_transport::identity::Name;

use super::matching::{PathPattern, method_matches};

/// A rule, compiled.
#[derive(Clone, Debug)]
struct Rule {
    name: String,
    action: Action,
    callers: Vec<CallerMatch>,
    paths: Vec<PathPattern>,
    methods: Vec<String>,
}

/// An `authz` document, compiled.
#[derive(Clone, Debug)]
pub struct Authz {
    doc: String,
    default: Action,
    shadow: bool,
    rules: Vec<Rule>,
}

/// Who is calling, as their certificate proves.
#[derive(Clone, Copy, Debug)]
pub struct Caller<'a> {
    /// SPIFFE ID, `spiffe://<td>/node/<name>`.
    pub id: &'a str,
    /// Services the certificate names.
    pub services: &'a BTreeSet<Name>,
}

/// What is asked: an HTTP request (method, normalized path without query), or `None` for a
/// TCP connection.
pub type Subject<'a> = Option<(&'a str, &'a str)>;

/// A would-be or actual denial: the document and the rule (or `default`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Denial {
    /// Document name.
    pub doc: String,
    /// Rule name, or `default`.
    pub rule: String,
}

impl Denial {
    /// `doc/rule`: the metric label.
    pub fn label(&self) -> String {
        format!("{}/{}", self.doc, self.rule)
    }

    /// The 403 body.
    pub fn message(&self, service: &str) -> String {
        if self.rule == "default" {
            format!(
                "denied by authz \"{}\": no rule allows this caller, and the default for {service} \
                 is deny",
                self.doc
            )
        } else {
            format!("denied by authz \"{}\", rule \"{}\"", self.doc, self.rule)
        }
    }
}

/// The outcome for one request.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Verdict {
    /// The first enforcing document that denies, if any.
    pub denied: Option<Denial>,
    /// Shadow documents that would deny.
    pub shadow: Vec<Denial>,
}

impl Authz {
    /// Compiles a document.
    pub fn new(spec: &AuthzSpec) -> Self {
        Self {
            doc: spec.name.to_string(),
            default: spec.default,
            shadow: spec.mode == AuthzMode::Shadow,
            rules: spec
                .rules
                .iter()
                .map(|r| Rule {
                    name: r.name.to_string(),
                    action: r.action,
                    callers: r.callers.clone(),
                    paths: r.paths.iter().map(PathPattern::new).collect(),
                    methods: r.methods.clone(),
                })
                .collect(),
        }
    }

    /// The action for this request and the rule that chose it (`None`: the default).
    fn decide(&self, caller: &Caller<'_>, subject: Subject<'_>) -> (Action, Option<&str>) {
        for r in &self.rules {
            if r.matches(caller, subject) {
                return (r.action, Some(&r.name));
            }
        }
        (self.default, None)
    }
}

impl Rule {
    fn matches(&self, caller: &Caller<'_>, subject: Subject<'_>) -> bool {
        let who = self.callers.is_empty() || self.callers.iter().any(|c| caller_matches(c, caller));
        if !who {
            return false;
        }
        match subject {
            Some((method, path)) => {
                method_matches(&self.methods, method)
                    && (self.paths.is_empty() || self.paths.iter().any(|p| p.matches(path)))
            }
            None => self.methods.is_empty() && self.paths.is_empty(),
        }
    }
}

/// Whether `caller` is one `m` names.
pub fn caller_matches(m: &CallerMatch, caller: &Caller<'_>) -> bool {
    match m {
        CallerMatch::Spiffe(pattern) => glob(pattern.as_bytes(), caller.id.as_bytes()),
        CallerMatch::Service(s) => caller.services.contains(s),
    }
}

/// `*` stands for any run of characters other than `/`; everything else is literal. Dynamic
/// programming over (pattern, text) prefixes: linear in their product whatever the stars.
pub fn glob(pattern: &[u8], text: &[u8]) -> bool {
    // row[j]: the pattern so far matches text[..j]. One row, updated in place: a star reads
    // the entry it just wrote (ascending), a literal reads the one before (descending).
    let mut row = vec![false; text.len() + 1];
    row[0] = true;
    for &p in pattern {
        if p == b'*' {
            for j in 1..=text.len() {
                row[j] = row[j] || (row[j - 1] && text[j - 1] != b'/');
            }
        } else {
            for j in (1..=text.len()).rev() {
                row[j] = row[j - 1] && text[j - 1] == p;
            }
            row[0] = false;
        }
    }
    row[text.len()]
}

/// Evaluates every document of the service (sorted by name).
pub fn evaluate(docs: &[Authz], caller: &Caller<'_>, subject: Subject<'_>) -> Verdict {
    let mut v = Verdict::default();
    for d in docs {
        let (action, rule) = d.decide(caller, subject);
        if action == Action::Allow {
            continue;
        }
        let denial = Denial {
            doc: d.doc.clone(),
            rule: rule.unwrap_or("default").to_owned(),
        };
        if d.shadow {
            v.shadow.push(denial);
        } else if v.denied.is_none() {
            v.denied = Some(denial);
        }
    }
    v
}

#[cfg(test)]
mod tests {
    use murmur_membership::policy::{Kind, PolicyBody};

    use super::*;
    use crate::traffic::normalize;

    fn docs(toml: &str) -> Vec<Authz> {
        let table: toml::Table = toml::from_str(toml).unwrap();
        table["authz"]
            .as_array()
            .unwrap()
            .iter()
            .map(
                |v| match PolicyBody::from_value(Kind::Authz, v.clone()).unwrap() {
                    PolicyBody::Authz(a) => Authz::new(&a),
                    _ => unreachable!(),
                },
            )
            .collect()
    }

    fn services(names: &[&str]) -> BTreeSet<Name> {
        names
            .iter()
            .map(|n| Name::parse("service", n).unwrap())
            .collect()
    }

    #[test]
    fn globs_table() {
        let cases = [
            ("spiffe://td/node/web-*", "spiffe://td/node/web-1", true),
            ("spiffe://td/node/web-*", "spiffe://td/node/web-", true),
            ("spiffe://td/node/web-*", "spiffe://td/node/api-1", false),
            ("spiffe://td/node/*", "spiffe://td/node/a/b", false),
            ("spiffe://td/*/n1", "spiffe://td/node/n1", true),
            ("spiffe://td/node/n1", "spiffe://td/node/n1x", false),
            ("spiffe://*/node/*-a", "spiffe://x/node/b-c-a", true),
            ("*", "", true),
        ];
        for (p, t, want) in cases {
            assert_eq!(glob(p.as_bytes(), t.as_bytes()), want, "{p} ~ {t}");
        }
    }

    #[test]
    fn first_matching_rule_decides_then_the_default() {
        let d = docs(
            r#"
            [[authz]]
            name = "web-authz"
            service = "web"
            default = "deny"
            rules = [
              { name = "no-delete", action = "deny", methods = ["DELETE"] },
              { name = "frontend-reads", action = "allow", callers = [{ service = "frontend" }], methods = ["GET", "HEAD"] },
              { name = "admins", action = "allow", callers = [{ spiffe = "spiffe://td/node/admin-*" }], paths = [{ prefix = "/admin" }] },
              { name = "tcp-ops", action = "allow", callers = [{ spiffe = "spiffe://td/node/ops" }] },
            ]
            "#,
        );
        let front = services(&["frontend"]);
        let none = services(&[]);
        let f = Caller {
            id: "spiffe://td/node/f1",
            services: &front,
        };
        let admin = Caller {
            id: "spiffe://td/node/admin-1",
            services: &none,
        };
        let ops = Caller {
            id: "spiffe://td/node/ops",
            services: &none,
        };
        // (caller, subject, denial rule or allowed)
        let cases: &[(&Caller<'_>, Subject<'_>, Option<&str>)] = &[
            (&f, Some(("GET", "/x")), None),
            (&f, Some(("POST", "/x")), Some("default")),
            (&f, Some(("DELETE", "/x")), Some("no-delete")),
            (&admin, Some(("POST", "/admin/users")), None),
            (&admin, Some(("POST", "/administrator")), Some("default")),
            (&admin, Some(("GET", "/x")), Some("default")),
            (&f, None, Some("default")),
            (&admin, None, Some("default")),
            (&ops, None, None),
            (&ops, Some(("PUT", "/any")), None),
        ];
        for (i, (caller, subject, want)) in cases.iter().enumerate() {
            let v = evaluate(&d, caller, *subject);
            assert_eq!(
                v.denied.as_ref().map(|d| d.rule.as_str()),
                *want,
                "case {i}: {} {subject:?}",
                caller.id
            );
            assert!(v.shadow.is_empty());
        }
        let denial = evaluate(&d, &f, Some(("POST", "/x"))).denied.unwrap();
        assert_eq!(denial.label(), "web-authz/default");
        assert!(denial.message("web").contains("default for web is deny"));
    }

    #[test]
    fn every_enforcing_document_must_allow_and_shadow_ones_only_report() {
        let d = docs(
            r#"
            [[authz]]
            name = "a-open"
            service = "web"
            default = "allow"

            [[authz]]
            name = "b-shadow"
            service = "web"
            default = "deny"
            mode = "shadow"

            [[authz]]
            name = "c-no-admin"
            service = "web"
            default = "allow"
            rules = [{ name = "admin", action = "deny", paths = [{ prefix = "/admin" }] }]
            "#,
        );
        let none = services(&[]);
        let c = Caller {
            id: "spiffe://td/node/x",
            services: &none,
        };
        let v = evaluate(&d, &c, Some(("GET", "/ok")));
        assert_eq!(v.denied, None);
        assert_eq!(v.shadow.len(), 1);
        assert_eq!(v.shadow[0].label(), "b-shadow/default");
        let v = evaluate(&d, &c, Some(("GET", "/admin")));
        assert_eq!(v.denied.unwrap().label(), "c-no-admin/admin");
    }

    /// The serving node decides on the normalized path: no spelling of `/admin` reaches it
    /// under an allow rule for `/public`, and none escapes a deny rule for `/admin`.
    #[test]
    fn encoded_and_dotted_paths_cannot_slip_past_a_rule() {
        let allow_public = docs(
            r#"
            [[authz]]
            name = "public-only"
            service = "web"
            default = "deny"
            rules = [{ name = "public", action = "allow", paths = [{ prefix = "/public" }] }]
            "#,
        );
        let deny_admin = docs(
            r#"
            [[authz]]
            name = "no-admin"
            service = "web"
            default = "allow"
            rules = [{ name = "admin", action = "deny", paths = [{ prefix = "/admin" }] }]
            "#,
        );
        let none = services(&[]);
        let c = Caller {
            id: "spiffe://td/node/x",
            services: &none,
        };
        // (raw path, allowed under public-only, allowed under no-admin); None: refused (400)
        let cases: &[(&str, Option<(bool, bool)>)] = &[
            ("/public/x", Some((true, true))),
            ("/public/../admin", Some((false, false))),
            ("/public/%2e%2e/admin", Some((false, false))),
            ("/public/%2E%2e/admin", Some((false, false))),
            ("/public//../admin", Some((false, false))),
            ("/public/./../admin", Some((false, false))),
            ("//admin", Some((false, false))),
            ("/./admin", Some((false, false))),
            ("/%61dmin", Some((false, false))),
            ("/admin/", Some((false, false))),
            ("/x/../admin/users", Some((false, false))),
            ("/%70ublic/x", Some((true, true))),
            ("/public/%252e%252e/admin", Some((true, true))),
            ("/publicity", Some((false, true))),
            ("/public/..%2Fadmin", None),
            ("/public%2F..%2Fadmin", None),
            ("/public/..%5Cadmin", None),
            ("/public/..;/admin", None),
            ("/public/%00/../admin", None),
        ];
        for (raw, want) in cases {
            let got = normalize::path(raw).ok().map(|p| {
                let a = evaluate(&allow_public, &c, Some(("GET", &p)))
                    .denied
                    .is_none();
                let b = evaluate(&deny_admin, &c, Some(("GET", &p)))
                    .denied
                    .is_none();
                (a, b)
            });
            assert_eq!(got, *want, "{raw}");
        }
    }
}
