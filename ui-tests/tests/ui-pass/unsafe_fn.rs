//! `unsafe fn` (the workspace forbids `unsafe` in its own tests, so this
//! shape is a trybuild pass case): the body stays an unsafe context.
#![deny(warnings)]

#[raindrop::tool]
unsafe fn read_byte(p: *const u8) -> u8 {
    *p
}

#[raindrop::interaction("unsafe_async", user_id = "u")]
async unsafe fn read_async(p: *const u8) -> u8 {
    *p
}

fn main() {
    let b = 7u8;
    // SAFETY: `b` is a live local.
    assert_eq!(unsafe { read_byte(&b) }, 7);
    drop(unsafe { read_async(&b) });
}
