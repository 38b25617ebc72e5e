#[raindrop::tool(nmae = "search")]
fn search(q: &str) -> usize {
    q.len()
}

fn main() {}
