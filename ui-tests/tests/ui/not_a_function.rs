#[raindrop::tool]
struct Search;

fn main() {}
