//! Request routing: method and path to [`Operation`].

use http::Method;

/// One operation of the API; each is a Lambda function in the cloud.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Operation {
    /// `PUT /streams/{name}`
    CreateStream,
    /// `GET /streams/{name}`
    GetStream,
    /// `GET /streams`
    ListStreams,
    /// `DELETE /streams/{name}`
    DeleteStream,
    /// `POST /streams/{name}/start-ingest`
    StartIngest,
    /// `POST /streams/{name}/stop-ingest`
    StopIngest,
}

impl Operation {
    pub const ALL: [Operation; 6] = [
        Operation::CreateStream,
        Operation::GetStream,
        Operation::ListStreams,
        Operation::DeleteStream,
        Operation::StartIngest,
        Operation::StopIngest,
    ];

    /// The operation id used in the OpenAPI document and in logs.
    pub fn id(self) -> &'static str {
        match self {
            Operation::CreateStream => "createStream",
            Operation::GetStream => "getStream",
            Operation::ListStreams => "listStreams",
            Operation::DeleteStream => "deleteStream",
            Operation::StartIngest => "startIngest",
            Operation::StopIngest => "stopIngest",
        }
    }

    /// The Lambda binary serving this operation.
    pub fn binary(self) -> &'static str {
        match self {
            Operation::CreateStream => "create-stream",
            Operation::GetStream => "get-stream",
            Operation::ListStreams => "list-streams",
            Operation::DeleteStream => "delete-stream",
            Operation::StartIngest => "start-ingest",
            Operation::StopIngest => "stop-ingest",
        }
    }
}

/// A routed request: the operation and the stream name segment, as sent
/// (validated by the handler, so a bad name gets a 400 naming the problem).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route<'a> {
    pub operation: Operation,
    pub name: Option<&'a str>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteError {
    NotFound,
    MethodNotAllowed { allow: &'static str },
}

pub fn route<'a>(method: &Method, path: &'a str) -> Result<Route<'a>, RouteError> {
    let rest = path.strip_prefix("/streams").ok_or(RouteError::NotFound)?;
    let segments: Vec<&str> = if rest.is_empty() || rest == "/" {
        Vec::new()
    } else {
        rest.strip_prefix('/').ok_or(RouteError::NotFound)?.trim_end_matches('/').split('/').collect()
    };
    let (operation, name, allow) = match segments.as_slice() {
        [] => ((*method == Method::GET).then_some(Operation::ListStreams), None, "GET"),
        [name] => (
            match *method {
                Method::GET => Some(Operation::GetStream),
                Method::PUT => Some(Operation::CreateStream),
                Method::DELETE => Some(Operation::DeleteStream),
                _ => None,
            },
            Some(*name),
            "GET, PUT, DELETE",
        ),
        [name, action @ ("start-ingest" | "stop-ingest")] => (
            (*method == Method::POST).then_some(if *action == "start-ingest" { Operation::StartIngest } else { Operation::StopIngest }),
            Some(*name),
            "POST",
        ),
        _ => return Err(RouteError::NotFound),
    };
    match operation {
        Some(operation) => Ok(Route { operation, name }),
        None => Err(RouteError::MethodNotAllowed { allow }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(m: Method, p: &str) -> Result<(Operation, Option<&str>), RouteError> {
        route(&m, p).map(|r| (r.operation, r.name))
    }

    #[test]
    fn routes() {
        assert_eq!(op(Method::GET, "/streams"), Ok((Operation::ListStreams, None)));
        assert_eq!(op(Method::GET, "/streams/"), Ok((Operation::ListStreams, None)));
        assert_eq!(op(Method::PUT, "/streams/a"), Ok((Operation::CreateStream, Some("a"))));
        assert_eq!(op(Method::GET, "/streams/a"), Ok((Operation::GetStream, Some("a"))));
        assert_eq!(op(Method::DELETE, "/streams/a"), Ok((Operation::DeleteStream, Some("a"))));
        assert_eq!(op(Method::POST, "/streams/a/start-ingest"), Ok((Operation::StartIngest, Some("a"))));
        assert_eq!(op(Method::POST, "/streams/a/stop-ingest"), Ok((Operation::StopIngest, Some("a"))));
        assert_eq!(op(Method::GET, "/other"), Err(RouteError::NotFound));
        assert_eq!(op(Method::GET, "/streamsx"), Err(RouteError::NotFound));
        assert_eq!(op(Method::GET, "/streams/a/b/c"), Err(RouteError::NotFound));
        assert_eq!(op(Method::POST, "/streams/a"), Err(RouteError::MethodNotAllowed { allow: "GET, PUT, DELETE" }));
        assert_eq!(op(Method::GET, "/streams/a/start-ingest"), Err(RouteError::MethodNotAllowed { allow: "POST" }));
    }
}
