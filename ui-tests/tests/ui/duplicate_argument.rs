#[raindrop::interaction("chat", user_id = "a", user_id = "b")]
fn chat(q: &str) -> String {
    q.to_owned()
}

fn main() {}
