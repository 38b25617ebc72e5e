use std::future::Future;

async fn work(x: u32) -> u32 {
    x + 1
}

// The future is made elsewhere: the span would end before it runs.
#[raindrop::tool]
fn deferred(x: u32) -> impl Future<Output = u32> {
    work(x)
}

fn main() {
    drop(deferred(1));
}
