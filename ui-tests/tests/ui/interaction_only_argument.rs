#[raindrop::tool("search", user_id = "u-1")]
fn search(q: &str) -> usize {
    q.len()
}

fn main() {}
