#[raindrop::tool(level = "loud")]
fn search(q: &str) -> usize {
    q.len()
}

fn main() {
    search("x");
}
