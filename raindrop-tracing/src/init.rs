//! The attribute macros' side channel to the layer, for the one span they
//! are about to create: what an interaction begins with (outside the span's
//! fields, so that no other layer sees it), and back from the layer whether
//! it records the span.
//!
//! An [`Opening`] guard holds the channel open on the creating thread while
//! the span is created (the layer's `on_new_span` runs inside `span!`, on
//! the same thread); dropping it closes the channel, whether or not a layer
//! took what it offered.

use std::cell::RefCell;

/// What an interaction span made by the attribute macros begins with.
#[derive(Debug, Default)]
pub(crate) struct SpanInit {
    /// The annotated function.
    pub(crate) fn_name: &'static str,
    pub(crate) user_id: Option<String>,
    pub(crate) convo_id: Option<String>,
    pub(crate) event: Option<String>,
    pub(crate) event_id: Option<String>,
}

/// The channel's state while an [`Opening`] is alive.
struct Slot {
    /// The span this is meant for, by name.
    span_name: &'static str,
    init: Option<SpanInit>,
    /// Set by the layer once it records the span: its text cap.
    recorded: Option<usize>,
}

thread_local! {
    static SLOT: RefCell<Option<Slot>> = const { RefCell::new(None) };
}

/// Holds the channel open for the next span named `span_name` created on
/// this thread; closes it when dropped.
#[derive(Debug)]
pub(crate) struct Opening(());

impl Opening {
    /// Opens the channel, offering `init` (for an interaction span).
    pub(crate) fn new(span_name: &'static str, init: Option<SpanInit>) -> Opening {
        let _ = SLOT.try_with(|s| {
            *s.borrow_mut() = Some(Slot {
                span_name,
                init,
                recorded: None,
            })
        });
        Opening(())
    }

    /// Closes the channel: `Some(max_text_field_chars)` when a raindrop
    /// layer records the span.
    pub(crate) fn close(self) -> Option<usize> {
        SLOT.try_with(|s| s.borrow_mut().take().and_then(|s| s.recorded))
            .ok()
            .flatten()
    }
}

impl Drop for Opening {
    fn drop(&mut self) {
        let _ = SLOT.try_with(|s| s.borrow_mut().take());
    }
}

/// For the layer creating span `span_name`: whether an [`Opening`] is meant
/// for it (`Some`), with what it offers.
pub(crate) fn take_for(span_name: &str) -> Option<Option<SpanInit>> {
    SLOT.try_with(|s| {
        let mut s = s.borrow_mut();
        let slot = s.as_mut().filter(|s| s.span_name == span_name)?;
        Some(slot.init.take())
    })
    .ok()
    .flatten()
}

/// For the layer: it records the span the [`Opening`] is meant for.
pub(crate) fn report_recorded(span_name: &str, max_chars: usize) {
    let _ = SLOT.try_with(|s| {
        if let Some(slot) = s.borrow_mut().as_mut() {
            if slot.span_name == span_name {
                slot.recorded = Some(max_chars);
            }
        }
    });
}
