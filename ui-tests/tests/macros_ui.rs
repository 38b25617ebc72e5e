//! Bad macro arguments are compile errors pointing at the argument; the
//! function shapes that cannot be runtime tests here compile clean.

#[test]
fn bad_arguments_are_compile_errors() {
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/ui/*.rs");
    t.pass("tests/ui-pass/*.rs");
}
