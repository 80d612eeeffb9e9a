use super::*;
use crate::policy::spec::{Action, AuthzMode, LimitKey, LimitScope, PathMatch, PolicyBody};

const DOCS: &str = include_str!("../../../../docs/policy.md");

/// The TOML examples of docs/policy.md.
fn doc_examples() -> Vec<&'static str> {
    DOCS.split("```toml\n")
        .skip(1)
        .filter_map(|b| b.split("```").next())
        .collect()
}

/// Whether an example is of the node's configuration rather than a policy file.
fn is_node_config(example: &str) -> bool {
    example.contains("[policy]") || example.contains("[access_log]")
}

fn err(text: &str) -> FileError {
    parse_file("p.toml", text).unwrap_err()
}

#[test]
fn every_documented_example_parses_and_every_kind_has_one() {
    let mut kinds = std::collections::BTreeSet::new();
    for example in doc_examples() {
        // The node configuration examples are not policy files.
        if is_node_config(example) {
            continue;
        }
        let docs = parse_file("docs/policy.md", example).unwrap_or_else(|e| panic!("{e}"));
        for d in docs {
            kinds.insert(d.kind());
            // What is signed reads back to the same body.
            assert_eq!(PolicyBody::from_json(d.kind(), &d.to_json()).unwrap(), d);
            // What `policy get` prints parses back too.
            assert_eq!(
                parse_file("get", &d.to_toml()).unwrap(),
                std::slice::from_ref(&d)
            );
        }
    }
    assert_eq!(kinds.len(), Kind::ALL.len(), "an example per kind");
}

#[test]
fn documents_read_into_typed_bodies_with_defaults() {
    let all: Vec<PolicyBody> = doc_examples()
        .into_iter()
        .filter(|e| !is_node_config(e))
        .flat_map(|e| parse_file("x", e).unwrap())
        .collect();
    let find = |name: &str| all.iter().find(|d| d.name().as_str() == name).unwrap();
    let PolicyBody::Route(r) = find("web-testers") else {
        panic!()
    };
    assert_eq!(r.priority, 10);
    assert_eq!(r.matches.path, Some(PathMatch::Prefix("/".into())));
    assert_eq!(r.backends[0].weight, 1);
    let PolicyBody::Retry(retry) = find("web-retries") else {
        panic!()
    };
    assert_eq!(retry.max_retries, 2);
    assert!(retry.on_connect_failure && !retry.non_idempotent);
    let PolicyBody::Ratelimit(rl) = find("web-per-caller") else {
        panic!()
    };
    assert_eq!((rl.by, rl.scope), (LimitKey::Caller, LimitScope::Global));
    let PolicyBody::Authz(a) = find("web-authz") else {
        panic!()
    };
    assert_eq!((a.default, a.mode), (Action::Deny, AuthzMode::Shadow));
    assert_eq!(a.rules[1].name.as_str(), "admins");
}

#[test]
fn unknown_kind_is_named() {
    let e = err("[[routes]]\nname = \"a\"\n");
    assert!(
        e.to_string().starts_with("p.toml: unknown kind `routes`"),
        "{e}"
    );
    let e = err("[route]\nname = \"a\"\n");
    assert!(e.message.contains("[[route]]"), "{e}");
    // Identity documents are not written in files.
    let e = err("[[revocation]]\nname = \"a\"\nnode = \"a\"\n");
    assert!(e.message.contains("murmur cert revoke"), "{e}");
}

#[test]
fn missing_field_names_document_and_field() {
    let e = err("[[route]]\nname = \"web-a\"\nservice = \"web\"\n");
    assert_eq!(e.document.as_deref(), Some("route \"web-a\""));
    assert_eq!(e.field.as_deref(), Some("backends"));
    assert!(e.message.contains("at least one backend"), "{e}");
    let e = err("[[timeout]]\nservice = \"web\"\nrequest = \"1s\"\n");
    assert_eq!(e.document.as_deref(), Some("timeout #1"));
    assert_eq!(e.field.as_deref(), Some("name"));
}

#[test]
fn wrong_type_names_the_nested_field() {
    let text = "[[route]]\nname = \"a\"\nservice = \"web\"\n[[route.backends]]\nservice = \"web\"\nweight = \"x\"\n";
    let e = err(text);
    assert_eq!(e.field.as_deref(), Some("backends.weight"), "{e}");
    assert!(e.message.contains("invalid type"), "{e}");
    assert_eq!(
        e.to_string(),
        "p.toml: route \"a\": field `backends.weight`: invalid type: string \"x\", expected u32"
    );
}

#[test]
fn unknown_field_is_refused() {
    let e = err("[[circuit]]\nname = \"c\"\nservice = \"web\"\nconsecutive_failure = 3\n");
    assert_eq!(e.field.as_deref(), Some("consecutive_failure"), "{e}");
}

#[test]
fn invalid_values_name_their_field() {
    let cases = [
        (
            "[[route]]\nname = \"a\"\nservice = \"web\"\nbackends = [{ service = \"web\" }, { service = \"web\", weight = 0 }]\n",
            "backends[1].weight",
        ),
        (
            "[[route]]\nname = \"a\"\nservice = \"web\"\nbackends = [{ service = \"web\" }]\nmatch = { path = { regex = \"(\" } }\n",
            "match.path",
        ),
        (
            "[[route]]\nname = \"a\"\nservice = \"web\"\nbackends = [{ service = \"web\" }]\nfault = { abort = { status = 503, percent = 150 } }\n",
            "fault.abort.percent",
        ),
        (
            "[[timeout]]\nname = \"t\"\nservice = \"web\"\nrequest = \"1s\"\nper_try = \"2s\"\n",
            "per_try",
        ),
        (
            "[[timeout]]\nname = \"t\"\nservice = \"web\"\nrequest = \"soon\"\n",
            "request",
        ),
        (
            "[[retry]]\nname = \"r\"\nservice = \"web\"\nstatuses = [200]\n",
            "statuses[0]",
        ),
        (
            "[[ratelimit]]\nname = \"r\"\nservice = \"web\"\nrate = 0\n",
            "rate",
        ),
        (
            "[[authz]]\nname = \"z\"\nservice = \"web\"\ndefault = \"allow\"\nrules = [{ name = \"r\", action = \"deny\", callers = [{ spiffe = \"http://x\" }] }]\n",
            "rules[0].callers[0]",
        ),
        (
            "[[authz]]\nname = \"Bad_Name\"\nservice = \"web\"\ndefault = \"allow\"\n",
            "name",
        ),
    ];
    for (text, field) in cases {
        let e = err(text);
        assert_eq!(e.field.as_deref(), Some(field), "{e}");
        assert!(e.document.is_some(), "{e}");
    }
}

#[test]
fn the_second_waves_fields_name_their_field_and_say_what_to_do() {
    let route = "[[route]]\nname = \"a\"\nservice = \"web\"\n";
    let web = "backends = [{ service = \"web\" }]\n";
    // (document, field, part of the message)
    let cases = [
        (
            "[[retry]]\nname = \"r\"\nservice = \"web\"\ngrpc_statuses = [\"UNAVAILABLE\", \"BUSY\"]\n".to_owned(),
            "grpc_statuses",
            "\"BUSY\" is not a gRPC status; the statuses are OK, CANCELLED",
        ),
        (
            "[[retry]]\nname = \"r\"\nservice = \"web\"\ngrpc_statuses = [\"OK\"]\n".to_owned(),
            "grpc_statuses[0]",
            "OK is a success",
        ),
        (
            format!("{route}{web}request_headers = {{ set = {{ host = \"x\" }} }}\n"),
            "request_headers.set.host",
            "managed by the mesh",
        ),
        (
            format!("{route}{web}response_headers = {{ add = {{ x-a = \"line\\nbreak\" }} }}\n"),
            "response_headers.add.x-a",
            "printable ASCII",
        ),
        (
            format!("{route}{web}request_headers = {{ remove = [\"x y\"] }}\n"),
            "request_headers.remove[0]",
            "not a header name",
        ),
        (
            format!("{route}{web}request_headers = {{}}\n"),
            "request_headers.set",
            "give `set`, `add` or `remove`",
        ),
        (
            format!("{route}{web}rewrite = {{ prefix = \"/v2\" }}\n"),
            "rewrite.prefix",
            "give the route `match.path = { prefix",
        ),
        (
            format!("{route}{web}match = {{ path = {{ prefix = \"/a\" }} }}\nrewrite = {{ prefix = \"v2\" }}\n"),
            "rewrite.prefix",
            "starts with '/'",
        ),
        (
            format!("{route}redirect = {{ status = 200, location = \"/x\" }}\n"),
            "redirect.status",
            "not a redirect status",
        ),
        (
            format!("{route}redirect = {{ location = \"elsewhere\" }}\n"),
            "redirect.location",
            "absolute URL",
        ),
        (
            format!("{route}{web}redirect = {{ location = \"/x\" }}\n"),
            "backends",
            "answers the request itself",
        ),
        (
            format!("{route}{web}mirror = {{ service = \"web\", percent = 101 }}\n"),
            "mirror.percent",
            "percentage",
        ),
        (
            format!("{route}{web}hash = {{ header = \"x-user\", cookie = \"sid\" }}\n"),
            "hash.header",
            "exactly one of",
        ),
        (
            format!("{route}{web}hash = {{ caller = true, load_factor = 0.5 }}\n"),
            "hash.load_factor",
            "outside 1..100",
        ),
        (
            format!("{route}{web}hash = {{ cookie = \"a;b\" }}\n"),
            "hash.cookie",
            "not a cookie name",
        ),
        (
            "[[accesslog]]\nname = \"l\"\nservice = \"web\"\nsample_percent = -1\n".to_owned(),
            "sample_percent",
            "percentage",
        ),
        (
            "[[accesslog]]\nname = \"l\"\nservice = \"web\"\nenabled = \"yes\"\n".to_owned(),
            "enabled",
            "invalid type",
        ),
    ];
    for (text, field, message) in cases {
        let e = err(&text);
        assert_eq!(e.field.as_deref(), Some(field), "{text}: {e}");
        assert!(e.message.contains(message), "{text}: {e}");
        assert!(e.document.is_some(), "{e}");
    }
}

#[test]
fn oversized_documents_and_duplicates_are_refused() {
    let rules: Vec<String> = (0..60)
        .map(|i| {
            format!(
                "{{ name = \"rule-{i}\", action = \"allow\", callers = [{{ spiffe = \"spiffe://murmur.local/node/some-long-node-name-{i}-*\" }}] }}"
            )
        })
        .collect();
    let text = format!(
        "[[authz]]\nname = \"big\"\nservice = \"web\"\ndefault = \"deny\"\nrules = [{}]\n",
        rules.join(", ")
    );
    let e = err(&text);
    assert!(e.message.contains("the limit is 4096 bytes"), "{e}");
    assert_eq!(e.document.as_deref(), Some("authz \"big\""));
    let twice = "[[ratelimit]]\nname = \"r\"\nservice = \"a\"\nrate = 1\n[[ratelimit]]\nname = \"r\"\nservice = \"b\"\nrate = 2\n";
    assert!(err(twice).message.contains("twice"));
}

#[test]
fn syntax_errors_carry_the_line() {
    let e = err("[[route]]\nname = \n");
    assert!(e.message.contains("line 2"), "{e}");
}
