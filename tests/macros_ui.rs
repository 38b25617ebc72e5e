//! Bad macro arguments are compile errors pointing at the argument.

#[test]
fn bad_arguments_are_compile_errors() {
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/ui/*.rs");
}
