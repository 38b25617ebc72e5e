const NAME: &str = "chat";

#[raindrop::interaction(name = NAME)]
fn chat(q: &str) -> String {
    q.to_owned()
}

fn main() {}
