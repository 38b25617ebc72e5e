//! Names replaced in this release still compile, and still name the same
//! items: code written against the previous release keeps building (with a
//! deprecation warning that names the replacement).

#![allow(deprecated)]

use std::any::TypeId;

#[test]
fn the_propagation_module_forwards_to_propagate() {
    assert_eq!(
        TypeId::of::<raindrop::propagation::CarrierTrust>(),
        TypeId::of::<raindrop::propagate::CarrierTrust>()
    );
    assert_eq!(
        TypeId::of::<raindrop::propagation::CarrierKey>(),
        TypeId::of::<raindrop_core::propagation::CarrierKey>()
    );
    assert_eq!(
        raindrop::propagation::TRACEPARENT,
        raindrop::propagate::TRACEPARENT
    );
    assert_eq!(
        raindrop::propagation::REPLAY_WINDOW,
        raindrop::propagate::REPLAY_WINDOW
    );
    let trust: raindrop::propagate::CarrierTrust = raindrop::propagation::CarrierTrust::Unsigned;
    let options = raindrop::ClientOptions::default().propagation_trust(trust);
    assert_eq!(
        options.propagation_trust,
        raindrop::propagate::CarrierTrust::Unsigned
    );
}

#[test]
fn setup_warning_is_still_callable_at_its_old_paths() {
    raindrop::setup_warning("deprecated-names-test", "said once");
    raindrop_core::setup_warning("deprecated-names-test", "not said again: same cause");
}

#[test]
fn the_hidden_interaction_helpers_still_compile_as_methods() {
    let i = raindrop::Interaction::noop();
    i.fill_unset(Some("m".into()), None, None);
    i.apply_begin(raindrop::Begin::new("u", "e"));
    raindrop_core::__private::fill_unset(&i, None, None, None);
    raindrop_core::__private::apply_begin(&i, raindrop::Begin::new("u", "e"));
    assert!(i.is_noop());
}
