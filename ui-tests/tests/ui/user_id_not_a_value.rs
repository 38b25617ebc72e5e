struct UserId(u64);

#[raindrop::interaction("chat", user_id = UserId(7))]
fn chat(q: &str) -> String {
    q.to_owned()
}

fn main() {}
