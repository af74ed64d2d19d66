//! Response bodies and the shapes of Jenkins' (Jetty's) answers.

use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::header::{CONTENT_TYPE, LOCATION, WWW_AUTHENTICATE};
use http::{HeaderValue, Response, StatusCode};
use hyper::body::{Frame, SizeHint};

use crate::authorization::Permission;

/// A body sent at once (with `Content-Length`), or in chunks of at most 8 KiB with chunked
/// transfer encoding, as Jenkins streams logs.
pub struct ResponseBody {
    data: Bytes,
    streamed: bool,
}

const CHUNK: usize = 8 * 1024;

impl ResponseBody {
    pub fn whole(data: impl Into<Bytes>) -> Self {
        Self { data: data.into(), streamed: false }
    }

    pub fn streamed(data: Bytes) -> Self {
        Self { data, streamed: true }
    }

    pub fn empty() -> Self {
        Self::whole(Bytes::new())
    }
}

impl hyper::body::Body for ResponseBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(mut self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if self.data.is_empty() {
            return Poll::Ready(None);
        }
        let size = if self.streamed { CHUNK.min(self.data.len()) } else { self.data.len() };
        let part = self.data.split_to(size);
        Poll::Ready(Some(Ok(Frame::data(part))))
    }

    fn is_end_stream(&self) -> bool {
        self.data.is_empty()
    }

    fn size_hint(&self) -> SizeHint {
        if self.streamed {
            SizeHint::default()
        } else {
            SizeHint::with_exact(self.data.len() as u64)
        }
    }
}

pub type Reply = Response<ResponseBody>;

fn with_type(status: StatusCode, content_type: &'static str, body: ResponseBody) -> Reply {
    let mut response = Response::new(body);
    *response.status_mut() = status;
    response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

pub fn json(value: &serde_json::Value) -> Reply {
    with_type(StatusCode::OK, "application/json;charset=utf-8", ResponseBody::whole(value.to_string()))
}

pub fn text(status: StatusCode, body: impl Into<Bytes>) -> Reply {
    with_type(status, "text/plain;charset=UTF-8", ResponseBody::whole(body.into()))
}

pub fn streamed_text(data: Bytes) -> Reply {
    with_type(StatusCode::OK, "text/plain;charset=UTF-8", ResponseBody::streamed(data))
}

pub fn xml(body: String) -> Reply {
    with_type(StatusCode::OK, "application/xml;charset=utf-8", ResponseBody::whole(body))
}

pub fn html(body: String) -> Reply {
    with_type(StatusCode::OK, "text/html;charset=utf-8", ResponseBody::whole(body))
}

pub fn empty(status: StatusCode) -> Reply {
    let mut response = Response::new(ResponseBody::empty());
    *response.status_mut() = status;
    response
}

pub fn redirect(status: StatusCode, location: &str) -> Reply {
    let mut response = empty(status);
    if let Ok(value) = HeaderValue::from_str(location) {
        response.headers_mut().insert(LOCATION, value);
    }
    response
}

pub fn escape_html(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// Jetty's error page, which Jenkins answers for `sendError` and for failures.
pub fn error_page(status: StatusCode, uri: &str, message: &str) -> Reply {
    let message = escape_html(message);
    let code = status.as_u16();
    let body = format!(
        "<html>\n<head>\n<meta http-equiv=\"Content-Type\" content=\"text/html;charset=utf-8\"/>\n<title>Error {code} {message}</title>\n</head>\n<body>\n<h2>HTTP ERROR {code} {message}</h2>\n<table>\n<tr><th>URI:</th><td>{}</td></tr>\n<tr><th>STATUS:</th><td>{code}</td></tr>\n<tr><th>MESSAGE:</th><td>{message}</td></tr>\n<tr><th>SERVLET:</th><td>Stapler</td></tr>\n</table>\n<hr/><a href=\"https://jetty.org/\">Powered by Jetty:// 12.0.16</a><hr/>\n</body>\n</html>\n",
        escape_html(uri)
    );
    with_type(status, "text/html;charset=utf-8", ResponseBody::whole(body))
}

/// 401 for a wrong user, password or token.
pub fn unauthorized(uri: &str, user: &str) -> Reply {
    let mut response = error_page(StatusCode::UNAUTHORIZED, uri, &format!("Invalid password/token for user: {user}"));
    response.headers_mut().insert(WWW_AUTHENTICATE, HeaderValue::from_static("Basic realm=\"Jenkins\""));
    response
}

/// 403 for an anonymous request: Jenkins sends a login hint, not a Basic challenge.
pub fn authentication_required(uri: &str) -> Reply {
    let body = format!(
        "<html><head><meta http-equiv='refresh' content='1;url=/login?from={}'/><script id='redirect' data-redirect-url='/login?from={}' src='/static/redirect.js'></script></head><body style='background-color:white; color:white;'>\nAuthentication required\n<!--\n-->\n</body></html>\n",
        escape_html(uri),
        escape_html(uri)
    );
    let mut response = with_type(StatusCode::FORBIDDEN, "text/html;charset=utf-8", ResponseBody::whole(body));
    let headers = response.headers_mut();
    headers.insert("X-You-Are-Authenticated-As", HeaderValue::from_static("anonymous"));
    headers.insert("X-Required-Permission", HeaderValue::from_static("hudson.model.Hudson.Read"));
    headers.insert("X-Permission-Implied-By", HeaderValue::from_static("hudson.security.Permission.GenericRead"));
    response
}

/// 403 for a user who may not do this (Jenkins' `AccessDeniedHandlerImpl` rendering
/// `accessDenied.jelly` with the exception's message).
pub fn access_denied(message: &str) -> Reply {
    let body = format!(
        "<!DOCTYPE html><html><head><title>Jenkins</title></head><body><div id=\"main-panel\"><h1>Access Denied</h1><p class=\"error\">{}</p></div></body></html>\n",
        escape_html(message)
    );
    with_type(StatusCode::FORBIDDEN, "text/html;charset=utf-8", ResponseBody::whole(body))
}

/// 403 "alice is missing the Job/Build permission" (Jenkins' `AccessDeniedException3`), with the
/// headers its `reportAsHeaders` adds.
pub fn missing_permission(user: &str, permission: Permission) -> Reply {
    let mut response = access_denied(&format!("{user} is missing the {} permission", permission.title()));
    let headers = response.headers_mut();
    if let Ok(user) = HeaderValue::from_str(user) {
        headers.insert("X-You-Are-Authenticated-As", user);
    }
    headers.insert(
        "X-You-Are-In-Group-Disabled",
        HeaderValue::from_static(
            "JENKINS-39402: use -Dhudson.security.AccessDeniedException2.REPORT_GROUP_HEADERS=true or use /whoAmI to diagnose",
        ),
    );
    headers.insert("X-Required-Permission", HeaderValue::from_static(permission.id()));
    for implying in permission.implied_by_chain() {
        headers.append("X-Permission-Implied-By", HeaderValue::from_static(implying.id()));
    }
    response
}

pub fn not_found(uri: &str) -> Reply {
    error_page(StatusCode::NOT_FOUND, uri, "Not Found")
}

pub fn requires_post(uri: &str) -> Reply {
    error_page(StatusCode::METHOD_NOT_ALLOWED, uri, "This URL requires POST")
}
