#[raindrop::task(skip(query, nope))]
fn rank(query: &str, limit: usize) -> usize {
    query.len() + limit
}

fn main() {}
