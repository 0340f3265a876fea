package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"image/color"
	"io"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/redpipe/redpipe"
	"github.com/schollz/progressbar/v3"
	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
	"gonum.org/v1/plot/vg/vgsvg"
)

// benchPrefix namespaces the bench's keys, as the demo's prefix does its
// own, so that a run on a server holding other data touches nothing else.
const benchPrefix = "redpipe:bench:"

// benchKey is the one counter every measurement increments.
const benchKey = benchPrefix + "incr_key"

const benchUsage = `usage: redpipe bench [flags]

Sends -n INCRs one by one, then in one pipeline, as the demo's last
section does; then sweeps the pipeline depth: for each depth it runs
pipelines of that many INCRs for -duration, as a plain batch and as a
MULTI/EXEC transaction, checks the counter, and reports INCRs per second.
Prints a table and writes a chart of INCR/s against the depth.

Uses the server in REDIS_URL, touching only keys under ` + benchPrefix + `,
or a throwaway redis-server when REDIS_URL is not set.

flags:
`

// benchConfig says what the bench measures and where it writes.
type benchConfig struct {
	URL         string        // the server to use; empty starts a throwaway one
	Incrs       int           // INCRs of the one-by-one against one-pipeline comparison
	Depths      []int         // pipeline depths of the sweep, ascending, distinct
	Duration    time.Duration // how long each point of the sweep runs
	Chart       string        // where the chart goes; .svg or .png
	Out         io.Writer     // the results
	Progress    io.Writer     // the progress bars
	ProgressTTY bool          // Progress is a terminal that can redraw a line
}

// benchPoint is one depth of the sweep, in INCRs per second.
type benchPoint struct {
	Depth int
	Plain float64 // c.Pipeline(redpipe.NoTransaction)
	Multi float64 // c.Pipeline(), wrapped in MULTI/EXEC
}

// benchResult is what the chart is drawn from.
type benchResult struct {
	OneByOne float64 // INCR/s sent one by one, for reference
	Points   []benchPoint
}

// runBenchCmd parses the flags of `redpipe bench`, runs it, and returns
// the exit code.
func runBenchCmd(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	cfg, err := parseBenchFlags(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		return 2
	}
	cfg.URL = redisURL(getenv)
	cfg.Out = stdout
	cfg.Progress = stderr
	cfg.ProgressTTY = isTerminal(stderr)
	return exitCode(ctx, "bench", runBench(ctx, cfg), stderr)
}

// parseBenchFlags reads the command line into a benchConfig. Every mistake
// is reported before anything runs, so that a bad -out does not surface
// only after the whole sweep.
func parseBenchFlags(args []string, stderr io.Writer) (benchConfig, error) {
	fs := flag.NewFlagSet("redpipe bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, benchUsage)
		fs.PrintDefaults()
	}
	n := fs.Int("n", 100_000, "INCRs sent one by one, then in one pipeline")
	depths := fs.String("depths", "1,10,100,1000,10000", "comma-separated pipeline depths (INCRs per pipeline) to sweep")
	out := fs.String("out", "redpipe-bench.svg", "chart file; .svg or .png")
	dur := fs.Duration("duration", time.Second, "how long each depth runs, with and without a transaction")
	rest, err := parseInterspersed(fs, args)
	if err != nil {
		return benchConfig{}, err
	}
	fail := func(format string, a ...any) (benchConfig, error) {
		err := fmt.Errorf(format, a...)
		fmt.Fprintf(stderr, "redpipe bench: %v\n", err)
		fs.Usage()
		return benchConfig{}, err
	}
	if len(rest) > 0 {
		return fail("unexpected argument %q", rest[0])
	}
	if *n < 1 || *n > maxBatch {
		return fail("-n must be from 1 to %d (one pipeline holds all of them, and their replies, in memory), got %d", maxBatch, *n)
	}
	if *dur <= 0 {
		return fail("-duration must be positive, got %v", *dur)
	}
	ds, err := parseDepths(*depths)
	if err != nil {
		return fail("-depths: %v", err)
	}
	if _, err := chartFormat(*out); err != nil {
		return fail("-out: %v", err)
	}
	if err := writableFile(*out); err != nil {
		return fail("-out: %v", err)
	}
	return benchConfig{Incrs: *n, Depths: ds, Duration: *dur, Chart: *out}, nil
}

// writableFile reports why a file could not be written at path, if it
// could not: a folder that does not exist or does not take new files, or
// a folder in the file's place. It leaves nothing behind.
func writableFile(path string) error {
	if fi, err := os.Stat(path); err == nil {
		if fi.IsDir() {
			return fmt.Errorf("%s is a folder", path)
		}
		// It will be overwritten: opening it for writing, without
		// truncating it, tells whether it can be.
		f, err := os.OpenFile(path, os.O_WRONLY, 0)
		if err != nil {
			return err
		}
		return f.Close()
	}
	dir := filepath.Dir(path)
	// The probe's error would name the probe, a file the user never
	// asked for.
	if fi, err := os.Stat(dir); errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("cannot write a file in %s: there is no such folder", dir)
	} else if err == nil && !fi.IsDir() {
		return fmt.Errorf("cannot write a file in %s: it is a file, not a folder", dir)
	}
	f, err := os.CreateTemp(dir, ".redpipe-bench-*")
	if err != nil {
		return fmt.Errorf("cannot write a file in %s: %w", dir, err)
	}
	f.Close()
	return os.Remove(f.Name())
}

// maxBatch bounds -n and each depth: one pipeline of that many INCRs, with
// its replies, takes about 100 MB, which a machine running a benchmark can
// spare; a larger one could take more memory than it has.
const maxBatch = 1_000_000

// parseDepths reads "1,10,100" into ascending, distinct depths.
func parseDepths(s string) ([]int, error) {
	var ds []int
	for f := range strings.SplitSeq(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		d, err := strconv.Atoi(f)
		if err != nil || d < 1 {
			return nil, fmt.Errorf("%q is not a positive whole number", f)
		}
		if d > maxBatch {
			return nil, fmt.Errorf("%d is more than %d, the most one pipeline may hold here", d, maxBatch)
		}
		ds = append(ds, d)
	}
	if len(ds) == 0 {
		return nil, errors.New("no depth given")
	}
	slices.Sort(ds)
	return slices.Compact(ds), nil
}

// chartFormat returns the chart's format, named by the file's extension.
func chartFormat(path string) (string, error) {
	switch ext := strings.ToLower(filepath.Ext(path)); ext {
	case ".svg", ".png":
		return ext[1:], nil
	default:
		return "", fmt.Errorf("%q: the chart is written as .svg or .png, by the file's extension", path)
	}
}

// runBench runs the bench against cfg.URL, or against a redis-server it
// starts and always stops.
func runBench(ctx context.Context, cfg benchConfig) error {
	return withServer(ctx, cfg.URL, cfg.Out, serverNotes{
		throwaway: "REDIS_URL is not set: using a throwaway redis-server at %s.\n",
		user:      "Using REDIS_URL=%s. Only " + benchKey + " is written, and deleted at the end.\n",
	}, func(c *redpipe.Client, _ bool) error { return bench(ctx, c, cfg) })
}

// bench runs the comparison and the sweep on c and draws the chart; it
// deletes the counter at the end.
func bench(ctx context.Context, c *redpipe.Client, cfg benchConfig) (err error) {
	w := cfg.Out
	defer func() {
		// The run's context may be why we are here; deleting the counter
		// still deserves a few seconds.
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		if _, derr := c.Del(cctx, benchKey); derr != nil && err == nil {
			err = derr
		}
	}()

	var res benchResult
	if res.OneByOne, err = seedComparison(ctx, c, cfg); err != nil {
		return err
	}
	if res.Points, err = sweep(ctx, c, cfg); err != nil {
		return err
	}
	printSweep(w, cfg, res.Points)
	if err := writeChart(cfg, res); err != nil {
		return fmt.Errorf("writing the chart: %w", err)
	}
	fmt.Fprintf(w, "\nChart of INCR/s against pipeline depth written to %s\n", cfg.Chart)
	return nil
}

// seedComparison times cfg.Incrs INCRs sent one by one, then the same in
// one transactional pipeline followed by a GET, which is redis-py's
// pipeline() default. It returns the one-by-one rate, drawn on the chart
// for reference.
func seedComparison(ctx context.Context, c *redpipe.Client, cfg benchConfig) (float64, error) {
	n := cfg.Incrs
	w := cfg.Out
	fmt.Fprintf(w, "\n%d INCRs one by one, then in one MULTI/EXEC pipeline with a GET\n\n", n)

	if err := c.Set(ctx, benchKey, 0); err != nil {
		return 0, err
	}
	bar := newProgress(cfg.Progress, cfg.ProgressTTY, n, "INCR one by one")
	start := time.Now()
	for range n {
		if _, err := c.Incr(ctx, benchKey); err != nil {
			bar.Exit()
			return 0, err
		}
		bar.Add(1)
	}
	without, err := c.Get(ctx, benchKey)
	if err != nil {
		bar.Exit()
		return 0, err
	}
	tWithout := time.Since(start)
	bar.Finish()

	if err := c.Set(ctx, benchKey, 0); err != nil {
		return 0, err
	}
	start = time.Now()
	p := c.Pipeline()
	for range n {
		p.Incr(benchKey)
	}
	p.Get(benchKey)
	replies, err := p.Exec(ctx)
	if err != nil {
		return 0, err
	}
	tWith := time.Since(start)
	with := replies[len(replies)-1].String()

	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "  \ttime\tINCR/s\tIncrement value\n")
	fmt.Fprintf(tw, "  without pipeline\t%v\t%.0f\t%s\n", tWithout.Round(time.Microsecond), rate(n, tWithout), without)
	fmt.Fprintf(tw, "  with pipeline\t%v\t%.0f\t%s\n", tWith.Round(time.Microsecond), rate(n, tWith), with)
	tw.Flush()
	fmt.Fprintf(w, "  speedup: %.1fx\n", tWithout.Seconds()/tWith.Seconds())

	if want := strconv.Itoa(n); without != want || with != want {
		return 0, fmt.Errorf("increment values %s and %s, want %s", without, with, want)
	}
	return rate(n, tWithout), nil
}

func rate(n int, d time.Duration) float64 { return float64(n) / d.Seconds() }

// pipelineKind is one of the two ways the sweep sends a pipeline.
type pipelineKind struct {
	name string
	opts []redpipe.PipelineOption
}

var (
	plainKind = pipelineKind{"plain", []redpipe.PipelineOption{redpipe.NoTransaction}}
	multiKind = pipelineKind{"MULTI/EXEC", nil}
	kinds     = [2]pipelineKind{plainKind, multiKind}
)

// benchTurns is how many turns each kind of pipeline takes at one depth.
// Taking turns, rather than one kind for the whole duration and then the
// other, gives both the same share of whatever else the machine is doing
// meanwhile, so that the two lines can be compared.
const benchTurns = 5

// sweep measures every depth of cfg.Depths, plain and in a transaction.
func sweep(ctx context.Context, c *redpipe.Client, cfg benchConfig) ([]benchPoint, error) {
	bar := newSweepProgress(cfg.Progress, cfg.ProgressTTY, len(cfg.Depths))
	points := make([]benchPoint, len(cfg.Depths))
	for i, depth := range cfg.Depths {
		bar.Describe(fmt.Sprintf("depth %d", depth))
		base := i * sweepStepUnits
		progress := func(done time.Duration) {
			bar.Set(base + min(sweepStepUnits, int(sweepStepUnits*done/(2*cfg.Duration))))
		}
		rates, err := measure(ctx, c, depth, cfg.Duration, progress)
		if err != nil {
			bar.Exit()
			return nil, fmt.Errorf("depth %d: %w", depth, err)
		}
		points[i] = benchPoint{Depth: depth, Plain: rates[0], Multi: rates[1]}
		bar.Set((i + 1) * sweepStepUnits)
	}
	bar.Finish()
	return points, nil
}

// measure runs pipelines of depth INCRs for about d of each kind, in
// turns, and returns the INCRs per second of each. After every turn the
// counter must hold exactly the number of INCRs sent so far: a pipeline
// that lost or repeated commands would otherwise pass for a fast one.
// progress is told how much of the 2*d has been spent.
func measure(ctx context.Context, c *redpipe.Client, depth int, d time.Duration, progress func(time.Duration)) ([2]float64, error) {
	var rates [2]float64
	if err := c.Set(ctx, benchKey, 0); err != nil {
		return rates, err
	}
	var pipes [2]*redpipe.Pipeline
	for k, kind := range kinds {
		pipes[k] = c.Pipeline(kind.opts...)
	}
	exec := func(k int) error {
		for range depth {
			pipes[k].Incr(benchKey)
		}
		if _, err := pipes[k].Exec(ctx); err != nil {
			return fmt.Errorf("%s pipeline: %w", kinds[k].name, err)
		}
		return nil
	}
	sent := 0
	check := func(k int) error {
		got, err := c.Get(ctx, benchKey)
		if err != nil {
			return err
		}
		if got != strconv.Itoa(sent) {
			return fmt.Errorf("%s pipeline: counter is %s after %d INCRs", kinds[k].name, got, sent)
		}
		return nil
	}
	// One batch of each kind off the clock: a large pipeline runs on a
	// connection of its own, and dialing it is not what is being measured.
	for k := range kinds {
		if err := exec(k); err != nil {
			return rates, err
		}
		sent += depth
		if err := check(k); err != nil {
			return rates, err
		}
	}

	turn := max(d/benchTurns, 1)
	var incrs [2]int
	var spent [2]time.Duration
	for range benchTurns {
		for k := range kinds {
			start := time.Now()
			var elapsed time.Duration
			for elapsed < turn {
				if err := exec(k); err != nil {
					return rates, err
				}
				incrs[k] += depth
				sent += depth
				elapsed = time.Since(start)
				progress(spent[0] + spent[1] + elapsed)
			}
			spent[k] += elapsed
			if err := check(k); err != nil {
				return rates, err
			}
		}
	}
	for k := range kinds {
		rates[k] = rate(incrs[k], spent[k])
	}
	return rates, nil
}

// sweepStepUnits is how finely the sweep's bar divides one depth, so that
// it moves while a depth runs rather than once every two -duration.
const sweepStepUnits = 100

// newSweepProgress makes the sweep's bar, which counts time rather than
// commands: how many INCRs a point sends is only known once it ran. Like
// the demo's bar, it redraws in place only on a terminal.
func newSweepProgress(w io.Writer, tty bool, depths int) *progressbar.ProgressBar {
	return newBar(w, tty, depths*sweepStepUnits,
		progressbar.OptionSetDescription("depth sweep"),
		progressbar.OptionSetPredictTime(true))
}

// printSweep prints the sweep as a table. Speedups are against the
// smallest depth, 1 unless -depths leaves it out, of the same kind.
func printSweep(w io.Writer, cfg benchConfig, points []benchPoint) {
	base := points[0]
	fmt.Fprintf(w, "\nAt each depth, plain and MULTI/EXEC pipelines take turns on one client, %v of each:\n\n", cfg.Duration)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "depth\tplain INCR/s\tMULTI/EXEC INCR/s\tplain speedup\tMULTI/EXEC speedup\t\n")
	for _, pt := range points {
		fmt.Fprintf(tw, "%d\t%.0f\t%.0f\t%.1fx\t%.1fx\t\n",
			pt.Depth, pt.Plain, pt.Multi, pt.Plain/base.Plain, pt.Multi/base.Multi)
	}
	tw.Flush()
	fmt.Fprintf(w, "\nSpeedups are against depth %d of the same kind of pipeline.\n", base.Depth)
	fmt.Fprintln(w, "Every point's counter matched the number of INCRs sent.")
}

// Chart size. Fonts are in points, so the PNG gets its pixels from the DPI
// rather than a bigger page, which would shrink the text.
const (
	chartWidth  = 9 * vg.Inch
	chartHeight = 5.5 * vg.Inch
	chartDPI    = 150
)

// writeChart draws INCR/s against the pipeline depth, one line per kind
// of pipeline, with the one-by-one rate as a reference line.
func writeChart(cfg benchConfig, res benchResult) error {
	format, err := chartFormat(cfg.Chart)
	if err != nil {
		return err
	}
	p := plot.New()
	p.Title.Text = fmt.Sprintf("redpipe: INCR/s by pipeline depth\n(one client, %v per point)", cfg.Duration)
	p.X.Label.Text = "pipeline depth (INCRs per pipeline, log scale)"
	p.Y.Label.Text = "INCR/s (log scale)"
	// Rates span from tens of thousands to millions; on a linear axis the
	// shallow depths, and the reference line, would sit flat on zero.
	p.X.Scale, p.Y.Scale = plot.LogScale{}, plot.LogScale{}
	p.X.Tick.Marker = plot.LogTicks{Prec: -1}
	p.Y.Tick.Marker = plot.TickerFunc(rateTicks)
	p.X.Min, p.X.Max = decades(float64(res.Points[0].Depth), float64(res.Points[len(res.Points)-1].Depth))
	lo, hi := res.OneByOne, res.OneByOne
	for _, pt := range res.Points {
		lo, hi = min(lo, pt.Plain, pt.Multi), max(hi, pt.Plain, pt.Multi)
	}
	p.Y.Min, p.Y.Max = decades(lo, hi)
	p.Add(plotter.NewGrid())
	// The rates climb with the depth and the axis ends a decade above,
	// which leaves the top left empty. The legend's box starts above the
	// data area, by the room kept for the top tick label, hence the
	// offsets.
	p.Legend.Top, p.Legend.Left = true, true
	p.Legend.XOffs, p.Legend.YOffs = 4*vg.Millimeter, -7*vg.Millimeter

	for i, kind := range kinds {
		xys := make(plotter.XYs, len(res.Points))
		for j, pt := range res.Points {
			xys[j].X = float64(pt.Depth)
			if kind.name == plainKind.name {
				xys[j].Y = pt.Plain
			} else {
				xys[j].Y = pt.Multi
			}
		}
		line, points, err := plotter.NewLinePoints(xys)
		if err != nil {
			return err
		}
		line.Color = plotutil.Color(i)
		line.Width = vg.Points(1.5)
		line.Dashes = plotutil.Dashes(i)
		points.Color = plotutil.Color(i)
		points.Shape = plotutil.Shape(i)
		points.Radius = vg.Points(3)
		p.Add(line, points)
		label := "plain pipeline (NoTransaction)"
		if kind.name == multiKind.name {
			label = "MULTI/EXEC pipeline (the default)"
		}
		p.Legend.Add(label, line, points)
	}

	ref, err := plotter.NewLine(plotter.XYs{{X: p.X.Min, Y: res.OneByOne}, {X: p.X.Max, Y: res.OneByOne}})
	if err != nil {
		return err
	}
	ref.Color = color.Gray{Y: 110}
	ref.Dashes = []vg.Length{vg.Points(2), vg.Points(3)}
	p.Add(ref)
	p.Legend.Add("INCR one by one, no pipeline", ref)

	var canvas vg.CanvasWriterTo
	switch format {
	case "png":
		canvas = vgimg.PngCanvas{Canvas: vgimg.NewWith(vgimg.UseWH(chartWidth, chartHeight), vgimg.UseDPI(chartDPI))}
	default:
		canvas = vgsvg.New(chartWidth, chartHeight)
	}
	p.Draw(draw.New(canvas))

	return replaceFile(cfg.Chart, func(w io.Writer) error {
		_, err := canvas.WriteTo(w)
		return err
	})
}

// replaceFile writes path through write into a new file of the same
// folder, renamed over path once complete, so that a failed write, or a
// second Ctrl-C that kills the tool halfway, leaves the chart of the last
// run as it was rather than cut short or empty. The new file is removed
// if anything fails. It keeps the mode of the file it replaces.
func replaceFile(path string, write func(io.Writer) error) (err error) {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*.tmp")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	mode := fs.FileMode(0o644)
	if fi, err := os.Stat(path); err == nil {
		mode = fi.Mode().Perm()
	}
	if err := f.Chmod(mode); err != nil {
		return err
	}
	if err := write(f); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), path)
}

// decades widens [lo, hi] to whole powers of ten, so that a log axis
// starts and ends on a labelled tick, and spans at least one decade.
func decades(lo, hi float64) (float64, float64) {
	lo = math.Pow(10, math.Floor(math.Log10(lo)))
	hi = math.Pow(10, math.Ceil(math.Log10(hi)))
	if hi <= lo {
		hi = lo * 10
	}
	return lo, hi
}

// rateTicks labels a log axis of rates as 10k, 100k, 1M rather than
// 10000, 100000, 1e+06.
func rateTicks(lo, hi float64) []plot.Tick {
	ticks := plot.LogTicks{}.Ticks(lo, hi)
	for i := range ticks {
		if ticks[i].Label != "" {
			ticks[i].Label = siRate(ticks[i].Value)
		}
	}
	return ticks
}

func siRate(v float64) string {
	switch {
	case v >= 1e9:
		return strconv.FormatFloat(v/1e9, 'g', -1, 64) + "G"
	case v >= 1e6:
		return strconv.FormatFloat(v/1e6, 'g', -1, 64) + "M"
	case v >= 1e3:
		return strconv.FormatFloat(v/1e3, 'g', -1, 64) + "k"
	default:
		return strconv.FormatFloat(v, 'g', -1, 64)
	}
}
