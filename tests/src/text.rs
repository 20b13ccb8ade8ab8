//! Texts for tests of long-text handling.

/// Returns at least `chars` characters of alternating English and Chinese sentences, with a
/// space after each English sentence and none between Chinese ones, as mixed prose is written.
pub fn mixed_chinese_english(chars: usize) -> String {
    let mut text = String::new();
    let mut i = 0;
    while text.chars().count() < chars {
        i += 1;
        text.push_str(&format!(
            "This is English sentence number {i}, spoken at length. "
        ));
        text.push_str("这是一个很长的中文句子，用来测试长文本的分段与合并。");
    }
    text
}
