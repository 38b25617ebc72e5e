//! Spans whose output is a stream of text chunks (a streamed model answer,
//! an SSE response).
//!
//! [`text_stream`] wraps any [`Stream`] and ends the given raindrop span
//! (an interaction, LLM, task or tool span) when the stream ends: with the
//! concatenated text as its output and the time to the first chunk
//! (`time_to_first_chunk_ms` property; `gen_ai.response.time_to_first_chunk`
//! in seconds on an LLM span). A stream dropped before its end (the client
//! went away) ends the span as `cancelled`; an `Err` chunk ends it with that
//! error. The wrapper never blocks and never panics; on a span no raindrop
//! layer tracks it only passes the chunks through.
//!
//! The span must be one the stream owns: create it by hand (`info_span!(..,
//! raindrop.kind = "interaction")`), not with the attribute macros, which end
//! their span when the function returns (before the stream is read).
//!
//! ```
//! use futures_core::Stream;
//! use raindrop_tracing::stream::text_stream;
//!
//! fn answer(chunks: impl Stream<Item = String>) -> impl Stream<Item = String> {
//!     let span = tracing::info_span!("chat", raindrop.kind = "interaction");
//!     text_stream(span, chunks)
//! }
//! ```

use std::borrow::Cow;
use std::fmt;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

pub use futures_core::Stream;
use tracing::Span;

use crate::access::{apply_to_span, complete_span, tracked_cap};
use crate::fields::Fields;

/// A stream item that carries text (and perhaps an error).
pub trait TextChunk {
    /// The text of this chunk, if any.
    fn chunk_text(&self) -> Option<&str>;
    /// The error this chunk reports, if any: it ends the span failed.
    fn chunk_error(&self) -> Option<String> {
        None
    }
}

impl TextChunk for String {
    fn chunk_text(&self) -> Option<&str> {
        Some(self)
    }
}
impl TextChunk for &str {
    fn chunk_text(&self) -> Option<&str> {
        Some(self)
    }
}
impl TextChunk for Box<str> {
    fn chunk_text(&self) -> Option<&str> {
        Some(self)
    }
}
impl TextChunk for Arc<str> {
    fn chunk_text(&self) -> Option<&str> {
        Some(self)
    }
}
impl TextChunk for Cow<'_, str> {
    fn chunk_text(&self) -> Option<&str> {
        Some(self)
    }
}
impl<T: TextChunk, E: fmt::Display> TextChunk for Result<T, E> {
    fn chunk_text(&self) -> Option<&str> {
        self.as_ref().ok().and_then(TextChunk::chunk_text)
    }
    fn chunk_error(&self) -> Option<String> {
        match self {
            Ok(t) => t.chunk_error(),
            Err(e) => Some(e.to_string()),
        }
    }
}

/// What one chunk says: text to append, or an error.
#[derive(Debug, Default)]
pub struct Chunk {
    /// Text to append to the output.
    pub text: Option<String>,
    /// An error: the span ends failed with it when the stream ends.
    pub error: Option<String>,
}

/// The stream returned by [`text_stream`] / [`text_stream_with`].
pub struct TextStream<S: Stream, F> {
    inner: Pin<Box<S>>,
    read: F,
    span: Span,
    /// `Some(max chars)` while the span is tracked and not yet ended.
    cap: Option<usize>,
    started: Instant,
    first: Option<Duration>,
    text: String,
    chars: usize,
    error: Option<String>,
}

impl<S: Stream, F> fmt::Debug for TextStream<S, F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TextStream")
            .field("span", &self.span)
            .field("chars", &self.chars)
            .finish_non_exhaustive()
    }
}

/// Wraps `stream` so that `span` ends when it ends, with the concatenated
/// text of its chunks as output (see the [module docs](self)).
pub fn text_stream<S>(span: Span, stream: S) -> TextStream<S, fn(&S::Item) -> Chunk>
where
    S: Stream,
    S::Item: TextChunk,
{
    fn read<T: TextChunk>(item: &T) -> Chunk {
        Chunk {
            text: item.chunk_text().map(str::to_owned),
            error: item.chunk_error(),
        }
    }
    text_stream_with(span, stream, read::<S::Item>)
}

/// Like [`text_stream`] for items of any type: `read` says what text (or
/// error) each item carries, e.g. the text delta of a model's stream event.
pub fn text_stream_with<S, F>(span: Span, stream: S, read: F) -> TextStream<S, F>
where
    S: Stream,
    F: FnMut(&S::Item) -> Chunk,
{
    TextStream {
        inner: Box::pin(stream),
        read,
        cap: tracked_cap(&span),
        span,
        started: Instant::now(),
        first: None,
        text: String::new(),
        chars: 0,
        error: None,
    }
}

impl<S: Stream, F> TextStream<S, F> {
    /// Ends the span (once).
    fn end(&mut self, error: Option<String>) {
        if self.cap.take().is_none() {
            return;
        }
        let mut f = Fields {
            output: Some(std::mem::take(&mut self.text)),
            error: error.or_else(|| self.error.take()),
            ..Fields::default()
        };
        if let Some(d) = self.first {
            let ms = i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
            f.properties
                .push(("time_to_first_chunk_ms".to_owned(), ms.into()));
        }
        apply_to_span(&self.span, f);
        if let Some(d) = self.first {
            crate::genai::set_time_to_first_chunk(&self.span, d);
        }
        complete_span(&self.span);
    }
}

impl<S, F> Stream for TextStream<S, F>
where
    S: Stream,
    F: FnMut(&S::Item) -> Chunk + Unpin,
{
    type Item = S::Item;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<S::Item>> {
        let this = &mut *self;
        let polled = {
            let _in = this.span.enter();
            this.inner.as_mut().poll_next(cx)
        };
        match &polled {
            Poll::Ready(Some(item)) => {
                if let Some(max) = this.cap {
                    let chunk = (this.read)(item);
                    if this.first.is_none() {
                        this.first = Some(this.started.elapsed());
                    }
                    if let Some(t) = chunk.text {
                        if this.chars <= max {
                            this.chars += t.chars().count();
                            this.text.push_str(&t);
                        }
                    }
                    if this.error.is_none() {
                        this.error = chunk.error;
                    }
                }
            }
            Poll::Ready(None) => this.end(None),
            Poll::Pending => {}
        }
        polled
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.inner.size_hint()
    }
}

impl<S: Stream, F> Drop for TextStream<S, F> {
    fn drop(&mut self) {
        self.end(Some("cancelled".to_owned()));
    }
}
