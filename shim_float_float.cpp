
#include <cmath>
using std::sqrt; using std::floor;
struct idx3 { unsigned x; };
static idx3 blockIdx, blockDim, threadIdx;
#define __global__
#define __device__ static
typedef float t_type;
typedef float v_type;

/* k-th smallest of a[0..m-1], rearranging a in place (N. Wirth, Algorithms + Data Structures
   = Programs, 1976). On return a[i] <= a[k] for i < k and a[i] >= a[k] for i > k. Expected
   O(m); ties stop both scans and are split between the two sides, so long runs of equal gaps
   (same-day orders) do not degrade it. */
__device__ double select_kth(double* a, const long long m, const long long k)
{
    long long l = 0;
    long long r = m - 1;
    while (l < r) {
        const double x = a[k];
        long long i = l;
        long long j = r;
        do {
            while (a[i] < x) ++i;
            while (x < a[j]) --j;
            if (i <= j) {
                const double tmp = a[i];
                a[i] = a[j];
                a[j] = tmp;
                ++i;
                --j;
            }
        } while (i <= j);
        if (j < k) l = i;
        if (k < i) r = j;
    }
    return a[k];
}

extern "C" __global__ void segscale_gap_stats(
    const t_type* __restrict__ t,
    const long long* __restrict__ offsets,
    const long long n_segments,
    double* __restrict__ scratch,
    double* __restrict__ mean_out,
    double* __restrict__ median_out,
    double* __restrict__ std_out)
{
    const long long s = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (s >= n_segments) return;
    const long long first = offsets[s];
    const long long m = offsets[s + 1] - first - 1;  /* number of gaps */
    if (m < 1) return;

    /* This segment's m gaps go to scratch[first, first + m): inside its own row range, so no
       other thread writes there. */
    double* g = scratch + first;
    double sum = 0.0;
    for (long long i = 0; i < m; ++i) {
        const double gap = (double)t[first + i + 1] - (double)t[first + i];
        g[i] = gap;
        sum += gap;
    }
    const double mean = sum / (double)m;
    double squares = 0.0;
    for (long long i = 0; i < m; ++i) {
        const double dev = g[i] - mean;
        squares += dev * dev;
    }
    mean_out[s] = mean;
    std_out[s] = sqrt(squares / (double)m);

    const long long k = (m - 1) / 2;
    const double lower = select_kth(g, m, k);
    double upper = lower;
    if (m % 2 == 0) {  /* the next order statistic is the smallest gap above position k */
        upper = g[k + 1];
        for (long long i = k + 2; i < m; ++i) {
            if (g[i] < upper) upper = g[i];
        }
    }
    median_out[s] = 0.5 * (lower + upper);
}

extern "C" __global__ void segscale_window_sums(
    const t_type* __restrict__ t,
    const v_type* __restrict__ values,
    const long long* __restrict__ offsets,
    const long long n_segments,
    const double* __restrict__ starts,
    const long long n_windows,
    const double end,
    int* __restrict__ counts,
    double* __restrict__ sums)
{
    const long long s = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (s >= n_segments) return;
    const long long first = offsets[s];
    const long long last = offsets[s + 1];
    for (long long j = 0; j < n_windows; ++j) {
        const double start = starts[j];
        int count = 0;
        double sum = 0.0;
        for (long long r = first; r < last; ++r) {
            const double tr = (double)t[r];
            if (tr >= start && tr < end) {
                ++count;
                const double v = (double)values[r];
                if (v == v) sum += v;  /* false only for NaN: NaN values are skipped */
            }
        }
        counts[s * n_windows + j] = count;
        sums[s * n_windows + j] = sum;
    }
}

extern "C" __global__ void segscale_monthly_slope(
    const t_type* __restrict__ t,
    const long long* __restrict__ offsets,
    const long long n_segments,
    const double start,
    const double end,
    const double month_days,
    const long long months,
    const double k_mean,
    const double sxx,
    double* __restrict__ slope)
{
    const long long s = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (s >= n_segments) return;
    double numerator = 0.0;  /* sum over rows in range of (bin - k_mean): exact in float64 */
    for (long long r = offsets[s]; r < offsets[s + 1]; ++r) {
        const double tr = (double)t[r];
        if (tr >= start && tr < end) {
            long long bin = (long long)floor((tr - start) / month_days);
            if (bin > months - 1) bin = months - 1;
            numerator += (double)bin - k_mean;
        }
    }
    slope[s] = numerator / sxx;
}

extern "C" void run_segscale_gap_stats(long long n_threads_total, const t_type* t, const long long* o, long long n, double* sc, double* a, double* b, double* c) {
    blockDim.x = 128;
    for (long long g = 0; g < n_threads_total; ++g) {
        blockIdx.x = (unsigned)(g / 128); threadIdx.x = (unsigned)(g % 128);
        segscale_gap_stats(t, o, n, sc, a, b, c);
    }
}

extern "C" void run_segscale_window_sums(long long n_threads_total, const t_type* t, const v_type* v, const long long* o, long long n, const double* st, long long nw, double end, int* cnt, double* sm) {
    blockDim.x = 128;
    for (long long g = 0; g < n_threads_total; ++g) {
        blockIdx.x = (unsigned)(g / 128); threadIdx.x = (unsigned)(g % 128);
        segscale_window_sums(t, v, o, n, st, nw, end, cnt, sm);
    }
}

extern "C" void run_segscale_monthly_slope(long long n_threads_total, const t_type* t, const long long* o, long long n, double start, double end, double md, long long months, double km, double sxx, double* out) {
    blockDim.x = 128;
    for (long long g = 0; g < n_threads_total; ++g) {
        blockIdx.x = (unsigned)(g / 128); threadIdx.x = (unsigned)(g % 128);
        segscale_monthly_slope(t, o, n, start, end, md, months, km, sxx, out);
    }
}
