//! `/v1/policies` on the admin port: the HTTP side of [`crate::policy::api`].

use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::{Request, Response};

use super::http::{Body, error, with_type};
use super::state::AdminState;
use crate::policy::api::{self, MAX_REQUEST};

/// Answers a policy request.
pub async fn route(state: &AdminState, req: Request<Incoming>) -> Response<Body> {
    let method = req.method().as_str().to_owned();
    let path = req.uri().path().to_owned();
    let query = req.uri().query().map(str::to_owned);
    let body = match Limited::new(req.into_body(), MAX_REQUEST).collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => return error(413, &format!("request body refused: {e}")),
    };
    let answer = api::handle(&state.policy, &method, &path, query.as_deref(), &body).await;
    with_type(answer.status, "application/json", answer.body)
}
