// The block Linear layers an adapter kind adapts (`adapter.targets`), shared by LoRA and hyper-lora.

import Tensor

extension ParameterLayout {
    /// The adapted Linear layers of every block in layout order: (name within the block, out, in).
    /// `ffn.fc1` / `ffn.fc2` adapt the Linear of both FFNs.
    public static func adapterSites(_ c: Config) -> [(String, Int, Int)] {
        let d = c.model.dim, f = c.model.ffnDim, a = c.adapter
        var out: [(String, Int, Int)] = []
        for ffn in ["ffn1", "ffn2"] {
            if a.adapts(.ffnFc1) { out.append(("\(ffn).fc1", f, d)) }
            if a.adapts(.ffnFc2) { out.append(("\(ffn).fc2", d, f)) }
        }
        let attention: [(AdapterTarget, String)] = [(.attnQ, "q"), (.attnK, "k"), (.attnV, "v"), (.attnOut, "out")]
        for (t, w) in attention where a.adapts(t) {
            out.append(("attn.\(w)", d, d))
        }
        if a.adapts(.convPw1) { out.append(("conv.pw1", 2 * d, d)) }
        if a.adapts(.convPw2) { out.append(("conv.pw2", d, d)) }
        return out
    }
}
