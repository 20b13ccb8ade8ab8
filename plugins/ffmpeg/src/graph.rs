//! The slideshow's timing and the ffmpeg filter graph that draws it.

/// Returns how many frames each of `images` slides shows so that together they last
/// `duration` seconds at `fps`, or `None` when some slide would get no frame at all.
///
/// Boundaries are rounded from the exact cumulative times, so the slides differ by at most
/// one frame and the total never drifts from the audio by more than half a frame.
pub(crate) fn frames_per_image(images: usize, duration: f64, fps: u32) -> Option<Vec<u64>> {
    if images == 0 {
        return None;
    }
    let total = duration * f64::from(fps);
    let boundary = |i: usize| (total * i as f64 / images as f64).round() as u64;
    let frames: Vec<u64> = (0..images).map(|i| boundary(i + 1) - boundary(i)).collect();
    frames.iter().all(|&n| n > 0).then_some(frames)
}

/// Returns the `-filter_complex` graph for a slideshow of `frames.len()` images, inputs
/// `0..n`, at `width`x`height` and `fps`, ending in the pad `[v]`.
///
/// Each image is fitted inside the frame, keeping its proportions, centred on black, and
/// converted to yuv420p (what players expect of H.264) before it is repeated: scaling once
/// per image rather than once per frame halves the encoding time.
pub(crate) fn filter_graph(frames: &[u64], width: u32, height: u32, fps: u32) -> String {
    let mut graph = String::new();
    for (i, n) in frames.iter().enumerate() {
        graph.push_str(&format!(
            "[{i}:v]scale={width}:{height}:force_original_aspect_ratio=decrease,\
             pad={width}:{height}:(ow-iw)/2:(oh-ih)/2:color=black,setsar=1,format=yuv420p,\
             loop=loop=-1:size=1:start=0,trim=end_frame={n},settb=1/{fps},setpts=N[v{i}];"
        ));
    }
    for i in 0..frames.len() {
        graph.push_str(&format!("[v{i}]"));
    }
    graph.push_str(&format!("concat=n={}:v=1:a=0[v]", frames.len()));
    graph
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_shared_equally_and_add_up() {
        assert_eq!(frames_per_image(1, 2.64, 25), Some(vec![66]));
        assert_eq!(frames_per_image(3, 3.0, 25), Some(vec![25, 25, 25]));
        let frames = frames_per_image(3, 10.0, 25).unwrap();
        assert_eq!(frames.iter().sum::<u64>(), 250);
        assert!(frames.iter().all(|&n| n == 83 || n == 84), "{frames:?}");
        let frames = frames_per_image(7, 61.37, 10).unwrap();
        assert_eq!(frames.iter().sum::<u64>(), 614);
    }

    #[test]
    fn a_slide_without_frames_is_refused() {
        assert_eq!(frames_per_image(0, 10.0, 25), None);
        assert_eq!(frames_per_image(30, 1.0, 25), None);
        assert_eq!(frames_per_image(2, 0.01, 25), None);
        assert!(frames_per_image(25, 1.0, 25).is_some());
    }

    #[test]
    fn the_graph_fits_each_image_and_concatenates_them() {
        let graph = filter_graph(&[50, 51], 1280, 720, 25);
        assert!(graph.starts_with(
            "[0:v]scale=1280:720:force_original_aspect_ratio=decrease,\
             pad=1280:720:(ow-iw)/2:(oh-ih)/2:color=black,"
        ));
        assert!(graph.contains("trim=end_frame=50,settb=1/25,setpts=N[v0];"));
        assert!(graph.contains("[1:v]scale="));
        assert!(graph.contains("trim=end_frame=51,settb=1/25,setpts=N[v1];"));
        assert!(graph.ends_with("[v0][v1]concat=n=2:v=1:a=0[v]"));
        // The scaling comes before the loop, so it runs once per image.
        let segment = graph.split(';').next().unwrap();
        assert!(segment.find("scale=").unwrap() < segment.find("loop=").unwrap());
    }
}
