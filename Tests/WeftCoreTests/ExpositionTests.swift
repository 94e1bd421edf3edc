import XCTest
import WeftMetrics

/// Prometheus's text format as Weft writes it.
final class ExpositionTests: XCTestCase {
    func testLabelValuesAndHelpAreEscaped() {
        let t = Exposition.render([MetricFamily("weft_x_total", .counter, "a\\b\nc", [Sample([("interface", "q\"u\\o\nte")], 3.0)])])
        XCTAssertEqual(t, """
        # HELP weft_x_total a\\\\b\\nc
        # TYPE weft_x_total counter
        weft_x_total{interface="q\\"u\\\\o\\nte"} 3

        """)
    }

    func testNumbers() {
        let t = Exposition.render([MetricFamily("g", .gauge, "h", [Sample([], 0.25), Sample([("a", "1")], Double.infinity),
                                                                   Sample([("a", "2")], UInt64(1) << 40), Sample([("a", "3")], Double.nan)])])
        XCTAssertTrue(t.contains("g 0.25\n"), t)
        XCTAssertTrue(t.contains("g{a=\"1\"} +Inf\n"), t)
        XCTAssertTrue(t.contains("g{a=\"2\"} 1099511627776\n"), t)
        XCTAssertTrue(t.contains("g{a=\"3\"} NaN\n"), t)
    }

    func testFamiliesOfOneNameMergeUnderOneHeader() {
        let t = Exposition.render([MetricFamily("weft_limit", .gauge, "h", [Sample([("limit", "a")], 1.0)]),
                                   MetricFamily("other", .gauge, "o", []),
                                   MetricFamily("weft_limit", .gauge, "h", [Sample([("limit", "b")], 2.0)])])
        XCTAssertEqual(t.components(separatedBy: "# TYPE weft_limit").count, 2, t)
        XCTAssertTrue(t.contains("weft_limit{limit=\"a\"} 1\nweft_limit{limit=\"b\"} 2\n"), t)
    }

    func testHistogramBucketsAreCumulative() {
        let h = Histogram(bounds: [0.01, 0.1, 1])
        for v in [0.005, 0.05, 0.05, 0.5, 5] { h.observe(v) }
        h.observe(Duration.milliseconds(20))
        let s = h.samples([("method", "request")])
        let buckets = s.filter { $0.suffix == "_bucket" }.map { ($0.labels.last!.1, $0.value) }
        XCTAssertEqual(buckets.map(\.0), ["0.01", "0.1", "1", "+Inf"])
        XCTAssertEqual(buckets.map(\.1), [1, 4, 5, 6])
        XCTAssertEqual(s.first { $0.suffix == "_count" }?.value, 6)
        XCTAssertEqual(s.first { $0.suffix == "_sum" }?.value ?? 0, 5.625, accuracy: 1e-9)
        XCTAssertEqual(s.first?.labels.first?.0, "method")
    }
}
