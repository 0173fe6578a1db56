//! The wasm-bindgen surface: three functions, strings in and out.

use wasm_bindgen::prelude::wasm_bindgen;

// A panic aborts the module (profile `wasm` has `panic = "abort"`), so the message
// must leave before the trap: the hook hands it to the JS that called in (the page's
// worker), and the page shows it and starts a fresh worker instead of going blank.
#[wasm_bindgen(inline_js = "export function report_panic(message) {
  const hook = globalThis.peerauthOnPanic;
  if (typeof hook === 'function') hook(message);
}")]
extern "C" {
    fn report_panic(message: &str);
}

#[wasm_bindgen(start)]
fn start() {
    std::panic::set_hook(Box::new(|info| report_panic(&info.to_string())));
}

thread_local! {
    // The worker's one evaluator: "Show more" on the page asks again with the same
    // text and larger limits, and gets its rows without a second evaluation.
    static EVALUATOR: std::cell::RefCell<crate::Evaluator> = Default::default();
}

/// Evaluate pasted manifests; see the crate docs for the JSON contract.
#[wasm_bindgen]
pub fn evaluate(text: &str, options: &str) -> String {
    EVALUATOR.with(|e| e.borrow_mut().evaluate_json(text, options))
}

/// The crate version.
#[wasm_bindgen]
pub fn version() -> String {
    crate::VERSION.to_string()
}

/// Panics on purpose, so the browser test can prove that a panic inside wasm
/// reaches the page as a message and the page recovers. Nothing else calls it.
#[wasm_bindgen(js_name = selfTestPanic)]
#[allow(clippy::panic)] // the one deliberate panic, see above
pub fn self_test_panic() {
    std::panic::panic_any("self-test panic requested by the page");
}
